"""Interchange and sync: moving provenance and cache between repositories, and in and out of redun.

    endpoint.py   one side of a sync: a repository's files (format, blobs, refs), no index
    transfer.py   copy what a destination lacks, in the write order (objects, eval heads,
                  journal segments, refs by compare-and-swap); resumable, checked, bounded
    streams.py    JSON-lines export/import: redun's record stream and objstore's full stream
    redun_db.py   migrate-redun: read a redun database (sqlite, PostgreSQL) read-only
    remotes.py    named remotes, kept in the local repository's config (never synced)

A sibling of redun/, maint/ and query/: it imports none of them (migrate-redun reads redun's
schema with SQL, so it never pays for importing redun).
"""
