#include <stdio.h>
#include "lib.h"

int main(int argc, char** argv) {
    printf("prog2: %s", get_message());
    return 0;
}
