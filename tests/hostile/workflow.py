"""The workflow the hostile corpus is recorded from: values, a fan-out, a handle (a ref file)
and a second execution, so every kind of file a repository holds exists in it.

``RAN`` counts task bodies that really ran in this process, so a test tells a cache hit from a
re-run (a cache miss) without parsing logs.
"""


from redun import Handle, task

redun_namespace = "hostile"
RAN: list[str] = []


class Counter(Handle):
    def __init__(self, name: str, start: int = 0):
        self.start = start


@task()
def square(x: int) -> int:
    RAN.append(f"square({x})")
    return x * x


@task()
def total(xs: list) -> int:
    RAN.append("total")
    return sum(xs)


@task()
def main(n: int = 4) -> int:
    RAN.append(f"main({n})")
    return total([square(i) for i in range(n)])


@task()
def bump(h: Counter, x: int) -> Counter:
    RAN.append(f"bump({x})")
    return h


@task()
def with_handle(x: int = 1) -> Counter:
    return bump(Counter("counter", start=x), x)


def expected(n: int) -> int:
    return sum(i * i for i in range(n))


@task()
def wipe(path: str) -> int:
    """Deletes a directory (the run's own index) while the run goes on."""
    import shutil

    RAN.append("wipe")
    shutil.rmtree(path, ignore_errors=True)
    return 0


@task()
def after(_: int, n: int) -> int:
    RAN.append("after")
    return total([square(i) for i in range(n)])


@task()
def wipe_then(path: str, n: int) -> int:
    """Deletes ``path`` (the index directory), then records more work: squares and a total."""
    return after(wipe(path), n)


@task()
def big(n: int, size: int) -> list:
    """Values of ``size`` random bytes each (incompressible): fills a small disk."""
    return [blob(i, size) for i in range(n)]


@task()
def blob(i: int, size: int) -> bytes:
    import os

    RAN.append(f"blob({i})")
    return os.urandom(size)
