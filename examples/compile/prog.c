#include <stdio.h>
#include "lib.h"

int main(int argc, char** argv) {
    printf("prog1: %s", get_message());
    return 0;
}
