"""Keeping a repository healthy for years: fsck, gc, repack/unpack, format versions (db).

    versions.py   db info / versions: the repository's format against what this objstore reads
    report.py     Problem and Report: what fsck and gc found, in words and as JSON
    inventory.py  what the repository holds, from listings and pack tocs (no index trusted)
    fsck.py       verify every object, pack, journal file, eval head, ref, call node, the index
    repair.py     fsck --repair: rebuild what is derivable, move damaged files to lost+found/
    salvage.py    the readable entries of a pack whose toc or bytes are damaged
    reach.py      what executions, eval heads, tags and handles reach (gc --prune)
    gc.py         temp files, journal compaction and retirement, retired packs, pruning
    repack.py     repack (merge small packs, drop duplicate copies) and unpack

A sibling of redun, sync and query: it builds on objstore.repo and objstore.backend only.
"""
