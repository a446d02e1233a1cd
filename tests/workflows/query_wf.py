"""A small workflow for the query tests: values, Files (produced, consumed, inside a list), a
failure with its traceback, a cached rerun. Run with `redun run query_wf.py main` and friends."""

from redun import File, task

redun_namespace = "qwf"


@task()
def inc(x: int) -> int:
    return x + 1


@task()
def write(path: str, x: int) -> File:
    out = File(path)
    out.write(str(x))
    return out


@task()
def read(f: File) -> int:
    return int(f.read())


@task()
def several(prefix: str, n: int) -> list:
    return [write(f"{prefix}{i}.txt", i) for i in range(n)]


@task()
def boom(x: int) -> int:
    raise ValueError(f"bad x={x}")


@task()
def main(x: int = 3) -> list:
    y = inc(x)
    f = write("out.txt", y)
    n = read(f)
    # several() waits for read(): the jobs start in one order on every backend.
    return [y, f, n, several("part", n - 2)]


@task()
def fails(x: int = 1) -> int:
    return boom(x)
