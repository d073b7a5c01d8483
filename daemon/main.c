int main(void) { return 0; } /* placeholder: replaced by the real CLI */
