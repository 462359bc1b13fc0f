"""The python-mysql-replication peer of `cargo bench --bench capture_mysql`:
reads the binlog from FILE:POS to its current end with `mysql-replication`
(PyPI) and decodes every row of SCHEMA's write/update/delete events, as a
Python consumer of the binlog would. Prints {"rows": n, "seconds": s}.

Usage: mysql_replication_peer.py HOST PORT USER PASSWORD SERVER_ID SCHEMA FILE POS
"""

import json
import sys
import time

from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent


def main():
    host, port, user, password, server_id, schema, log_file, log_pos = sys.argv[1:9]
    started = time.monotonic()
    stream = BinLogStreamReader(
        connection_settings={"host": host, "port": int(port), "user": user, "passwd": password},
        server_id=int(server_id),
        log_file=log_file,
        log_pos=int(log_pos),
        resume_stream=True,
        blocking=False,
        only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent],
        only_schemas=[schema],
    )
    rows = 0
    for event in stream:
        # `rows` decodes every value of every row in the event.
        rows += len(event.rows)
    stream.close()
    print(json.dumps({"rows": rows, "seconds": time.monotonic() - started}))


if __name__ == "__main__":
    main()
