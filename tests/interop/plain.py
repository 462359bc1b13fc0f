"""Values read by other tools, as plain JSON numbers and strings, so tests can
compare them exactly with what tidewater wrote (see tests/common/mod.rs,
`plain`): instants and local date-times as microseconds since the epoch,
dates as days since 1970-01-01, times of day as microseconds since midnight,
decimals as text at their scale, UUIDs as text, bytes as hex, non-finite
floats as "NaN" / "Infinity" / "-Infinity"."""

import datetime
import decimal
import math
import uuid

EPOCH_UTC = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
EPOCH = datetime.datetime(1970, 1, 1)


def plain(value):
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            delta = value - EPOCH_UTC
        else:
            delta = value - EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if isinstance(value, datetime.date):
        return (value - datetime.date(1970, 1, 1)).days
    if isinstance(value, datetime.time):
        return ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
