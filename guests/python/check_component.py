#!/usr/bin/env python3
"""Check a built content module: is it a component, what does it import and export,
and how large is its linear memory at instantiation.

    python3 guests/python/check_component.py target/guests/python/fortune_py.wasm

Pure Python (no wasm-tools needed). It reads only the component's top-level import
and export sections, and the memory sections of the core modules nested in it.
Exits 1 if the file is not a component, imports anything outside tongdao:partner,
or does not export tongdao:partner/module.
"""

import sys

COMPONENT_HEADER = b"\x00asm\x0d\x00\x01\x00"
WASM_PAGE = 65536
ALLOWED_IMPORT_PREFIX = "tongdao:partner/"
REQUIRED_EXPORT = "tongdao:partner/module@1.0.0"


class Reader:
    def __init__(self, data: bytes, pos: int = 0):
        self.data = data
        self.pos = pos

    def byte(self) -> int:
        b = self.data[self.pos]
        self.pos += 1
        return b

    def u32(self) -> int:  # unsigned LEB128
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return result

    def name(self) -> str:
        n = self.u32()
        s = self.data[self.pos : self.pos + n].decode("utf-8")
        self.pos += n
        return s

    def extern_name(self) -> str:
        # importname' / exportname': 0x00 name | 0x01 name versionsuffix
        tag = self.byte()
        name = self.name()
        if tag == 0x01:
            self.name()
        return name

    def externdesc(self) -> str:
        kind = self.byte()
        if kind == 0x00:  # core module
            self.byte()  # 0x11
            self.u32()
            return "core-module"
        if kind == 0x02:  # value bound
            self.byte()
            self.u32()
            return "value"
        if kind == 0x03:  # type bound
            if self.byte() == 0x00:
                self.u32()
            return "type"
        self.u32()
        return {0x01: "func", 0x04: "component", 0x05: "instance"}.get(kind, f"kind-{kind}")

    def sortidx(self) -> None:
        if self.byte() == 0x00:  # core sort
            self.byte()
        self.u32()


def inspect(data: bytes):
    imports, exports, memories = [], [], []
    r = Reader(data, 8)
    while r.pos < len(data):
        section = r.byte()
        size = r.u32()
        end = r.pos + size
        if section == 10:  # import
            for _ in range(r.u32()):
                name = r.extern_name()
                imports.append((name, r.externdesc()))
        elif section == 11:  # export
            for _ in range(r.u32()):
                name = r.extern_name()
                r.sortidx()
                if r.byte() == 0x01:
                    r.externdesc()
                exports.append(name)
        elif section == 1:  # a core module: look for the memories it defines
            m = Reader(data, r.pos + 8)
            while m.pos < end:
                sid = m.byte()
                ssize = m.u32()
                send = m.pos + ssize
                if sid == 5:
                    for _ in range(m.u32()):
                        flags = m.byte()
                        minimum = m.u32()
                        maximum = m.u32() if flags & 1 else None
                        memories.append((minimum, maximum))
                m.pos = send
        r.pos = end
    return imports, exports, memories


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    path = sys.argv[1]
    data = open(path, "rb").read()
    if data[:8] != COMPONENT_HEADER:
        print(f"{path}: not a component (header {data[:8].hex(' ')})", file=sys.stderr)
        return 1
    imports, exports, memories = inspect(data)
    ok = True
    for name, kind in imports:
        print(f"import {kind:9s} {name}")
        if not name.startswith(ALLOWED_IMPORT_PREFIX):
            print(f"  ERROR: {name} is not a {ALLOWED_IMPORT_PREFIX} interface", file=sys.stderr)
            ok = False
    for name in exports:
        print(f"export           {name}")
    if REQUIRED_EXPORT not in exports:
        print(f"  ERROR: {REQUIRED_EXPORT} is not exported", file=sys.stderr)
        ok = False
    for minimum, maximum in memories:
        mx = "none" if maximum is None else f"{maximum} pages"
        print(f"linear memory: min {minimum} pages ({minimum * WASM_PAGE / 2**20:.2f} MiB), max {mx}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
