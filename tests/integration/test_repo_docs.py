"""The repository documents itself: every file a README/docs/config/proto comment points to
exists in the repository, nothing points outside it (no `../shared/...`, no numbered sections
of documents that are not here), and every proto field, enum value and RPC carries a comment."""
import os
import re

from harness import SOURCE_DIR

TOP = ("docs", "config", "src", "lib", "include", "tests", "bench", "scripts", "proto", "cmake")
# Backquoted or bare repository paths such as `docs/server.md` or config/default.
PATH_RE = re.compile(r"(?<![\w./-])((?:%s)/[A-Za-z0-9_./<>*-]*[A-Za-z0-9_*])" % "|".join(TOP))
HEADER_RE = re.compile(r"`(ic/[a-z_]+\.h)`")


def _doc_files():
    out = [os.path.join(SOURCE_DIR, "README.md")]
    for d in ("docs", "config", "proto", "scripts"):
        for root, _, names in os.walk(os.path.join(SOURCE_DIR, d)):
            out += [os.path.join(root, n) for n in sorted(names)
                    if n.endswith((".md", ".yaml", ".yml", ".proto", ".sh", ".json"))]
    return out


def _comment_text(path, text):
    """Markdown counts whole; elsewhere only comment lines (# or //) are prose."""
    if path.endswith(".md"):
        return text
    lines = []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("#") or s.startswith("//"):
            lines.append(s)
        elif " # " in line:
            lines.append(line.split(" # ", 1)[1])
    return "\n".join(lines)


def _exists(ref):
    ref = ref.rstrip(".")
    if any(c in ref for c in "<>*"):  # a pattern: its fixed leading directory must exist
        ref = re.split(r"[<>*]", ref)[0].rsplit("/", 1)[0]
    full = os.path.join(SOURCE_DIR, ref)
    return os.path.exists(full) or os.path.exists(full + ".c")  # bench/bench_x names a program


def test_every_repository_path_in_docs_and_comments_exists():
    missing = []
    for path in _doc_files():
        text = _comment_text(path, open(path, encoding="utf-8").read())
        rel = os.path.relpath(path, SOURCE_DIR)
        for m in PATH_RE.finditer(text):
            ref = m.group(1)
            if ref.endswith("/") or "build" in ref.split("/")[0]:
                continue
            if not _exists(ref):
                missing.append("%s: %s" % (rel, ref))
        for m in HEADER_RE.finditer(text):
            if not os.path.exists(os.path.join(SOURCE_DIR, "include", m.group(1))):
                missing.append("%s: include/%s" % (rel, m.group(1)))
    assert not missing, "references to files not in the repository:\n" + "\n".join(missing)


def test_nothing_points_outside_the_repository():
    bad = []
    for path in _doc_files():
        text = _comment_text(path, open(path, encoding="utf-8").read())
        rel = os.path.relpath(path, SOURCE_DIR)
        for n, line in enumerate(text.splitlines(), 1):
            if "../shared" in line or "spec/" in line or "§" in line:
                bad.append("%s: %s" % (rel, line.strip()))
    assert not bad, "references outside the repository (specs, numbered sections):\n" + "\n".join(bad)


def test_every_proto_field_enum_value_and_rpc_is_documented():
    proto_dir = os.path.join(SOURCE_DIR, "proto", "inferencecache")
    undocumented = []
    decl = re.compile(r"^\s*(rpc\s+\w+|(repeated\s+|map<[^>]+>\s+)?[\w.]+\s+\w+\s*=\s*\d+;|\w+\s*=\s*\d+;)")
    for root, _, names in os.walk(proto_dir):
        for n in names:
            if not n.endswith(".proto"):
                continue
            lines = open(os.path.join(root, n), encoding="utf-8").read().splitlines()
            for i, line in enumerate(lines):
                if line.strip().startswith(("option ", "syntax", "package")) or not decl.match(line):
                    continue
                prev = lines[i - 1].strip() if i else ""
                if not (prev.startswith("//") or "//" in line):
                    undocumented.append("%s:%d: %s" % (n, i + 1, line.strip()))
    assert not undocumented, "proto declarations without a comment:\n" + "\n".join(undocumented)
