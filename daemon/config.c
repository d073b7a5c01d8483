/* placeholder: the config loader */
