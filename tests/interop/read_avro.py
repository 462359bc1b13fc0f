"""Decodes Avro object container files with fastavro, a reader no one here
wrote, and prints one JSON object per file: the writer schema's name and the
records.

Usage:
  read_avro.py FILE...
"""

import json
import sys

import fastavro


def main():
    for path in sys.argv[1:]:
        with open(path, "rb") as f:
            reader = fastavro.reader(f)
            schema = reader.writer_schema
            records = list(reader)
        print(json.dumps({"schema": schema.get("name"), "records": records}))


if __name__ == "__main__":
    main()
