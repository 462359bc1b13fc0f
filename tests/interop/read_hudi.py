"""Reads a tidewater lake table with the `hudi` package (hudi-rs), a reader no
one here wrote, and prints its rows as JSON lines (meta columns included,
values made plain by plain.py).

Usage:
  read_hudi.py snapshot BASE_URI
  read_hudi.py as_of BASE_URI INSTANT
  read_hudi.py incremental BASE_URI START END
  read_hudi.py commits BASE_URI
  read_hudi.py schema BASE_URI      (the table schema hudi-rs reads, name -> Arrow type)
  read_hudi.py files BASE_URI FILE...

`files` reads base files (paths relative to the table) with pyarrow alone,
no Hudi logic: for each file a line {"__file", "__footer": the Hudi footer
entries, "__min"/"__max": the smallest and largest record key in it}, then
its rows.

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


def read_files(uri, files):
    import pyarrow.parquet as pq

    if uri.startswith("s3://"):
        from pyarrow import fs

        endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
        filesystem = fs.S3FileSystem(
            access_key=os.environ.get("AWS_ACCESS_KEY_ID"),
            secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
            region=os.environ.get("AWS_REGION", "us-east-1"),
            endpoint_override=endpoint.split("://", 1)[-1],
            scheme="http" if endpoint.startswith("http://") else "https",
        )
        base = uri[len("s3://") :]
    else:
        filesystem = None
        base = uri[len("file://") :] if uri.startswith("file://") else uri
    for name in files:
        path = f"{base.rstrip('/')}/{name}"
        f = pq.ParquetFile(path, filesystem=filesystem)
        footer = {
            k.decode(): v.decode()
            for k, v in (f.metadata.metadata or {}).items()
            if k.decode().startswith(("hoodie_", "org.apache.hudi"))
        }
        data = f.read()
        keys = data.column("_hoodie_record_key").to_pylist()
        print(
            json.dumps(
                {
                    "__file": name,
                    "__footer": footer,
                    "__min": min(keys) if keys else None,
                    "__max": max(keys) if keys else None,
                }
            )
        )
        for row in rows([data]):
            print(json.dumps(row, sort_keys=True))


def main():
    mode, uri = sys.argv[1], sys.argv[2]
    if mode == "files":
        read_files(uri, sys.argv[3:])
        return
    t = table(uri)
    if mode == "schema":
        print(json.dumps({f.name: str(f.type) for f in t.get_schema()}))
        return
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
