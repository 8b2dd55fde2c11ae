"""Checks the libFuzzer dictionary of the model format (fuzz/dict_model.txt) against the code.

    fuzz_dict.py DICT TOP [LIB]

1. Every line is blank, a comment, or an entry as libFuzzer's ParseDictionaryFile reads it
   (`"word"` or `name="word"`, only \\\\, \\" and \\xAB escapes, printable bytes), the name of
   letters, digits and '_' (libFuzzer takes any text before the quote; AFL refuses the whole
   file for such a name), no word twice.
2. Every word is the format's: a name (letters, digits, '_', '.') stands in quotes in src/ or
   docs/format.md ("kind"); any other word stands there as it is (\\"). So a word the code drops
   or renames fails here instead of rotting in the dictionary.
3. Every word of the format that the code names is in it: the layer kinds, their fields, their
   tensors (src/layers/, src/nn/layer.c), the options as model files name them and their named
   values (src/nn/options.c), and the keys and constants the reader and writer use
   (src/io/schema.c, src/io/container.c).

4. With LIB (the built libcfnet.so), every layer kind the library itself reports
   (cfnet_layer_kind_count, cfnet_layer_kind_name) is among the kinds rule 3 found in src/. A
   kind registered in a way rule 3's patterns do not read would otherwise go unchecked, with its
   fields and tensors.

Prints each problem and exits 1; else prints the number of entries.
"""
import ctypes
import re
import sys
from pathlib import Path

NAME = re.compile(rb"[A-Za-z0-9_.]+")


def parse_entry(line):
    """The bytes of one entry as libFuzzer's ParseOneDictionaryEntry reads them, or None."""
    s = line.strip(b" \t\r\f\v")
    if len(s) < 3 or not s.endswith(b'"'):
        return None
    start = s.find(b'"')
    if start == len(s) - 1:
        return None
    name = s[:start]
    if name and not re.fullmatch(rb"[A-Za-z0-9_]+=", name):
        return None  # libFuzzer reads it, but AFL refuses the whole file: keep to both
    body, out, i = s[start + 1:-1], bytearray(), 0
    while i < len(body):
        c = body[i]
        if not (32 <= c < 127 or c in b"\t\n\v\f\r"):
            return None
        if c == 0x5C:  # backslash
            if body[i + 1:i + 2] in (b"\\", b'"'):
                out += body[i + 1:i + 2]
                i += 2
                continue
            if re.fullmatch(rb"x[0-9A-Fa-f]{2}", body[i + 1:i + 4]):
                out.append(int(body[i + 2:i + 4], 16))
                i += 4
                continue
            return None
        out.append(c)
        i += 1
    return bytes(out) if out else None


def parse(text):
    """(entries, problems) of a dictionary's text."""
    words, problems = [], []
    for no, line in enumerate(text.split(b"\n"), 1):
        s = line.strip()
        if not s or s.startswith(b"#"):
            continue
        w = parse_entry(line)
        if w is None:
            problems.append(f"line {no}: not a libFuzzer dictionary entry: {line.decode(errors='replace')}")
        elif w in words:
            problems.append(f"line {no}: {w!r} twice")
        else:
            words.append(w)
    return words, problems


def source_kinds(top):
    """The layer kinds src/ names, as rule 3 reads them (each kind's ops table)."""
    got = set()
    for f in sorted((top / "src/layers").glob("*.c")) + [top / "src/nn/layer.c"]:
        got |= set(re.findall(r'\.name = "([^"]+)"', f.read_text()))
    return got


def library_kinds(lib_path):
    """The layer kinds the built library reports, by its public functions."""
    lib = ctypes.CDLL(str(lib_path))
    lib.cfnet_layer_kind_count.restype = ctypes.c_int
    lib.cfnet_layer_kind_name.restype = ctypes.c_char_p
    lib.cfnet_layer_kind_name.argtypes = [ctypes.c_int]
    return [lib.cfnet_layer_kind_name(k).decode() for k in range(1, lib.cfnet_layer_kind_count() + 1)]


def code_words(top):
    """The format's words that the code names."""
    def read(rel):
        return (top / rel).read_text()

    got = source_kinds(top)
    for f in sorted((top / "src/layers").glob("*.c")) + [top / "src/nn/layer.c"]:
        text = f.read_text()
        for names in re.findall(r"\.[if]cfg_names = \{([^}]*)\}", text):
            got |= set(re.findall(r'"([^"]+)"', names))
        got |= set(re.findall(r'cf_layer_add_(?:param|state)\(\w+, "([^"]+)"', text))
    opts = read("src/nn/options.c")
    got |= set(re.findall(r'OPT\(\w+, "[^"]*", "([^"]+)"', opts))
    for names in re.findall(r"_names\[\] = \{([^}]*)\}", opts):
        got |= set(re.findall(r'"([^"]+)"', names))
    for rel in ("src/io/schema.c", "src/io/container.c"):
        text = read(rel)
        got |= set(re.findall(r'(?:cf_json_set|json_object_get)\(\w+, "([^"]+)"', text))
        got |= set(re.findall(r'json_string\("([^"]+)"\)', text))
        got |= set(re.findall(r'#define CF_\w+ "([^"]+)"', text))
        got |= set(re.findall(r'cf_container_has_unused\(&?\w+, "([^"]+)"', text))
        for names in re.findall(r"(?:known|required)\[\] = \{([^}]*)\}", text):
            got |= set(re.findall(r'"([^"]+)"', names))
    return {w.encode() for w in got}


def check(dict_path, top, lib_path=None):
    words, problems = parse(Path(dict_path).read_bytes())
    if lib_path is not None:
        found = source_kinds(top)
        for k, name in enumerate(library_kinds(lib_path), 1):
            if name not in found:
                problems.append(f"{name!r}, layer kind {k} of {lib_path}, is not found in src/layers/ "
                                f"by this checker (no '.name = \"{name}\"'): its fields and tensors go "
                                f"unchecked; teach source_kinds() and code_words() how it is registered")
    tree = b"\n".join(p.read_bytes() for p in sorted((top / "src").rglob("*.[ch]")))
    tree += (top / "docs/format.md").read_bytes()
    for w in words:
        seen = b'"' + w + b'"' if NAME.fullmatch(w) else w
        if seen not in tree:
            problems.append(f"{w.decode(errors='replace')!r} is not the format's: "
                            f"{seen.decode(errors='replace')} is not in src/ or docs/format.md "
                            f"(remove it from the dictionary, or put the word the code now uses)")
    for w in sorted(code_words(top) - set(words)):
        problems.append(f"{w.decode()!r}, a word of the format in the code, is not in the dictionary "
                        f"(add it, under its heading: NAME=\"{w.decode()}\")")
    return words, problems


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: fuzz_dict.py DICT TOP [LIB]")
    words, problems = check(sys.argv[1], Path(sys.argv[2]), sys.argv[3] if len(sys.argv) == 4 else None)
    for p in problems:
        print(f"{sys.argv[1]}: {p}")
    if problems:
        sys.exit(1)
    print(f"{sys.argv[1]}: {len(words)} entries, each the format's; every word of the code's in it")


if __name__ == "__main__":
    main()
