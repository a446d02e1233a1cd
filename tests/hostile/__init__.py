"""The hostile-input corpus (issue 12, item 5): corpus.py damages copies of a real recorded
repository; files/ keeps the bad files worth keeping as bytes; cli.py runs objstore's CLI in
child processes. The tests are tests/test_hostile*.py."""
