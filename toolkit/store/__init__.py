"""The artifact store (S3): where every record and artifact the platform keeps lives, and how it is read
and written.

    layout.py      one object naming every prefix the platform writes (models, datasets, the feedback
                   loop's logs, decisions, releases, promotions, retrain snapshots), and which
                   workload reads or writes which; the IAM policies in infra/ are written from it
    s3.py          s3:// URLs, files up and down with their sha256, small JSON records, listings
    artifacts.py   a signed model artifact up and down, checksums verified

Nothing below this package (ml/ and the base) talks to AWS.
"""
