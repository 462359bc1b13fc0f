"""Reads a tidewater lake table with the `hudi` package (hudi-rs), a reader no
one here wrote, and prints its rows as JSON lines (meta columns included,
values made plain by plain.py).

Usage:
  read_hudi.py snapshot BASE_URI
  read_hudi.py as_of BASE_URI INSTANT
  read_hudi.py incremental BASE_URI START END
  read_hudi.py commits BASE_URI

For s3:// URIs the storage options come from the environment
(AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,
AWS_ALLOW_HTTP), as `scripts/services.sh env` exports them.
"""

import json
import os
import sys

from hudi import HudiQueryType, HudiReadOptions, HudiTableBuilder

from plain import plain


def table(uri):
    builder = HudiTableBuilder.from_base_uri(uri)
    if uri.startswith("s3://"):
        options = {}
        for env, key in [
            ("AWS_ENDPOINT_URL", "aws_endpoint"),
            ("AWS_ACCESS_KEY_ID", "aws_access_key_id"),
            ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
            ("AWS_REGION", "aws_region"),
            ("AWS_ALLOW_HTTP", "aws_allow_http"),
        ]:
            if os.environ.get(env):
                options[key] = os.environ[env]
        builder = builder.with_storage_options(options)
    return builder.build()


def rows(batches):
    for batch in batches:
        for row in batch.to_pylist():
            yield {k: plain(v) for k, v in row.items()}


def main():
    mode, uri = sys.argv[1], sys.argv[2]
    t = table(uri)
    if mode == "commits":
        for instant in t.get_timeline().get_completed_commits():
            print(json.dumps({"timestamp": str(instant.timestamp)}))
        return
    if mode == "snapshot":
        options = HudiReadOptions()
    elif mode == "as_of":
        options = HudiReadOptions().with_as_of_timestamp(sys.argv[3])
    elif mode == "incremental":
        options = (
            HudiReadOptions()
            .with_query_type(HudiQueryType.Incremental)
            .with_start_timestamp(sys.argv[3])
            .with_end_timestamp(sys.argv[4])
        )
    else:
        raise SystemExit(f"unknown mode {mode}")
    for row in rows(t.read(options)):
        print(json.dumps(row, sort_keys=True))


if __name__ == "__main__":
    main()
