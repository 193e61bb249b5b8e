"""Regenerates python/sluice/errors.py's table of broker error classes.

Input: the `define_errors!` table of the kafka-protocol crate (the error codes
the Rust client knows, with Kafka's retriable flag and description), as lines
`(CamelName, code, retriable, "description")` on stdin. Class names follow
kafka-python's where it has one for the code (KAFKA_PYTHON_NAMES below), else
`<CamelName>Error`. Run by hand when the crate is upgraded:

    grep -oP '^\\s+\\(\\w+,\\s+-?\\d+,\\s+(true|false),\\s+".*"\\)' \\
        ~/.cargo/registry/src/*/kafka-protocol-*/src/error.rs \\
        | python tools/gen_errors.py > /tmp/table.py
"""

import re
import sys

# kafka-python's class name where it differs from `<CamelName>Error`.
KAFKA_PYTHON_NAMES = {
    -1: "UnknownError",
    2: "CorruptRecordError",
    4: "InvalidFetchRequestError",
    6: "NotLeaderForPartitionError",
    10: "MessageSizeTooLargeError",
    13: "NetworkExceptionError",
    39: "InvalidReplicationAssignmentError",
    40: "InvalidConfigurationError",
    56: "KafkaStorageError",
    106: "FetchSessionTopicIdError",
}


def screaming(camel: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", camel).upper()


def main() -> None:
    out = []
    for line in sys.stdin:
        m = re.match(r'\s*\((\w+),\s*(-?\d+),\s*(true|false),\s*"(.*)"\)', line)
        if not m:
            continue
        camel, code, retriable, desc = m.group(1), int(m.group(2)), m.group(3) == "true", m.group(4)
        name = KAFKA_PYTHON_NAMES.get(code, camel + "Error")
        alias = camel + "Error" if name != camel + "Error" and not camel.endswith("Error") else None
        base = "AuthorizationError" if camel.endswith("AuthorizationFailed") else "BrokerResponseError"
        desc = desc.replace("\\", "\\\\").replace('"', '\\"')
        out.append(f"\n\nclass {name}({base}):\n    errno = {code}\n    message = \"{screaming(camel)}\"\n"
                   f"    description = \"{desc}\"\n    retriable = {retriable}\n")
        if alias:
            out.append(f"\n\n{alias} = {name}\n")
    sys.stdout.write("".join(out))


if __name__ == "__main__":
    main()
