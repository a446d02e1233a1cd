"""redun's compile example, recording into objstore (see .redun/redun.ini).

Two programs share lib.c: `redun run workflow.py make` compiles every .c file into an object
file and links prog and prog2. Edit lib.c and run again: compile(prog.c) and compile(prog2.c)
are cache hits (their inputs did not change), while lib.c is compiled once more (the two
identical compile(lib.c) calls collapse into one job) and both programs are re-linked.
"""

import subprocess
from typing import Dict, List

from redun import File, task

redun_namespace = "redun.examples.compile"


@task()
def compile(c_file: File) -> File:
    """Compile one C file into an object file."""
    o_path = c_file.path[: -len(".c")] + ".o"
    subprocess.run(["gcc", "-c", c_file.path, "-o", o_path], check=True)
    return File(o_path)


@task()
def link(prog_path: str, o_files: List[File]) -> File:
    """Link object files into one program."""
    subprocess.run(["gcc", "-o", prog_path] + [o.path for o in o_files], check=True)
    return File(prog_path)


@task()
def make_prog(prog_path: str, c_files: List[File]) -> File:
    """Compile a program's sources and link them."""
    o_files = [compile(c_file) for c_file in c_files]
    return link(prog_path, o_files)


# Default inputs: the two programs and the sources each one is built from.
files = {
    "prog": [File("prog.c"), File("lib.c")],
    "prog2": [File("prog2.c"), File("lib.c")],
}


@task()
def make(files: Dict[str, List[File]] = files) -> List[File]:
    """Build every program."""
    return [make_prog(prog_path, c_files) for prog_path, c_files in files.items()]
