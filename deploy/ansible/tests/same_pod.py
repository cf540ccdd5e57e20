"""Exit 0 when two YAML files hold the same objects (parsed, so quoting,
key order and comments do not matter); else print both and exit 1."""
import json
import sys

import yaml


def load(path):
    with open(path, encoding="utf-8") as f:
        return list(yaml.safe_load_all(f))


a, b = load(sys.argv[1]), load(sys.argv[2])
if a != b:
    print(f"{sys.argv[1]} and {sys.argv[2]} differ:", file=sys.stderr)
    for path, docs in ((sys.argv[1], a), (sys.argv[2], b)):
        print(f"--- {path}", file=sys.stderr)
        print(json.dumps(docs, indent=1, sort_keys=True), file=sys.stderr)
    sys.exit(1)
print(f"same objects: {sys.argv[1]} == {sys.argv[2]}")
