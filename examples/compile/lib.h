char *get_message();
