char *get_message() {
    return "Hello, World!\n";
}
