"""A seeded, bounded fuzz of the worker protocol, on a real worker subprocess.

Why: the worker is fed by other programs (Slicer, scripts, a client over SSH), so a malformed line must cost one
error event and nothing else. A few hundred malformed requests (truncated JSON, wrong types for each field of each
request type, unknown types, huge numbers, NaN, deep nesting, bytes that are not UTF-8, blank and very long lines,
paths with ../ and absolute paths in every field that names a file, folder or session, unknown sessions) must
each get exactly one answer whose code is one of the protocol's and never "internal"; the worker must answer a
valid request afterwards and must not have written anything outside its own folder (its cwd, HOME and TMPDIR are
a fresh tree, compared before and after; the paths the fuzzer named outside the tree are checked too). The seed
is fixed, so a failure reproduces; its message shows the request. No request here starts real work (volumes and
sessions are unknown, manifests missing), so it stays well under a minute on two cores.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import random
import subprocess
import sys
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Set

import pytest

import promptregister
from promptregister import sample_data
from promptregister.worker.protocol import ERROR_CODES, PROTOCOL_VERSION

SEED = 20261208
CASES = 300
REPLY_TIMEOUT_S = 30.0

# What each request type takes, written from the protocol's documentation (protocol.py, interactive.py,
# transfer.py), independently of the worker's own table: "path" fields name a file, folder or volume.
KINDS: Dict[str, Dict[str, str]] = {
    "load": {"path": "path"},
    "cancel": {"target": "target"},
    "embed": {"volume": "path", "model": "text", "device": "text", "checkpoint": "file", "decoder": "file"},
    "register": {"fixed": "path", "moving": "path", "out_dir": "path", "text": "string", "points": "list",
                 "point_pairs": "list", "auto": "flag", "sample_points": "count", "options": "object",
                 "model": "text", "device": "text", "checkpoint": "file", "decoder": "file", "detector": "text",
                 "detector_checkpoint": "file", "resampled": "flag", "overwrite": "flag", "report": "flag"},
    "batch": {"manifest": "path", "out_dir": "path", "workers": "workers", "scheduler": "string",
              "settings": "object"},
    "open": {"fixed": "path", "moving": "path", "session": "new_session", "options": "object", "model": "text",
             "device": "text", "checkpoint": "file"},
    "prompt": {"session": "session", "points": "list", "pair": "text"},
    "correct": {"session": "session", "pair": "text", "lps": "list"},
    "delete": {"session": "session", "pair": "text"},
    "undo": {"session": "session"}, "auto": {"session": "session"}, "pairs": {"session": "session"},
    "close": {"session": "session"},
    "text": {"session": "session", "text": "text", "detector": "text", "detector_checkpoint": "file"},
    "fit": {"session": "session", "pairs": "ids", "warm": "flag"},
    "upload": {"name": "upload_name", "offset": "count", "last": "flag", "data": "string", "chunk_sha256": "string",
               "sha256": "string"},
    "download": {"path": "path", "offset": "count"},
}

# Values that are not of each kind (null is left out: it means "not given").
WRONG: Dict[str, List[Any]] = {
    "text": [5, 1.5, True, [], {}, ["a"], ""],
    "string": [5, True, [], {"a": 1}],
    "path": [5, True, [], {}, "", "a\x00b"],
    "file": [5, True, [], {}, "a\x00b"],  # "" is allowed: no file
    "flag": [0, 1, 1.0, "true", "false", [], {}],
    "count": [-1, 1.5, "3", True, [], {}, 10 ** 30],
    "object": [[], "x", 5, True, [{"a": 1}]],
    "list": ["x", 5, {}, True],
    "ids": ["p1", [1], [""], [["p1"]], 5],
    "target": [1.5, True, [], {}, ""],
    "new_session": ["../x", "/abs", "a/b", ".hidden", "", 7, "x" * 200],
    "session": [5, True, [], {}, ""],
    "upload_name": ["../x", "/abs/x", "a/b", "", 5, []],
    "workers": [-1, 257, 1.5, "2", True],
}

# Nested values that are malformed below the top level (the handlers' own parsers check these).
NESTED: Dict[str, List[Any]] = {
    "points": [[5], [{}], [{"lps": ["1", 2, 3]}], [{"lps": [0, 0]}], [{"lps": [0, 0, 0], "positive": "yes"}],
               [{"lps": [True, 0, 0]}]],
    "point_pairs": [[{"moving": [0, 0, 0]}], [{"moving": [0, 0], "fixed": [0, 0, 0]}], [[0, 0, 0]],
                    [{"moving": "0,0,0", "fixed": [0, 0, 0]}]],
    "options": [{"smoothness": "x"}, {"unfold": 1}, {"preset": 5}, {"preset": "nope"}, {"moving_slices": "1:3"},
                {"seed": 1.5}, {"no_such_option": 1}, {"device": "cpu"}, {"grid_spacing_mm": [6]}],
    "settings": [{"model": 5}, {"modle": "classical"}, {"options": {"smoothness": "x"}}, {"report": "yes"},
                 {"preset": []}, {"options": {"no_such_option": 1}}],
}


@dataclass
class Case:
    """One line to send and what must come back."""
    line: bytes
    why: str
    request_id: Any = None  # the id the answer carries (None: the line cannot be read as a request)
    replied: bool = True  # a blank line is skipped without an answer
    codes: Optional[Set[str]] = None  # the error codes it may get; None: any but "internal", or a result
    names: str = ""  # what the error message must name


class Fuzzer:
    """Seeded malformed requests whose harmless bases name unknown volumes and sessions and missing files."""

    def __init__(self, seed: int, tree: Path):
        self.rng = random.Random(seed)
        self.tree = tree
        self.number = 0
        self.paths: Set[str] = set()  # every path-like string sent, for the check of what was written

    def base(self, kind: str) -> Dict[str, Any]:
        missing = str(self.tree / "outside" / "missing")
        session = {"session": "no-such-session"}
        return {"hello": {}, "cancel": {"target": "nothing-running"}, "load": {"path": missing + ".nii.gz"},
                "embed": {"volume": "v404", "model": "classical", "device": "cpu"},
                "register": {"fixed": "v404", "moving": "v405", "out_dir": str(self.tree / "outside" / "out"),
                             "model": "classical", "device": "cpu", "points": [{"lps": [0.0, 0.0, 0.0]}],
                             "options": {"marginal_samples": 0}},
                "batch": {"manifest": missing + ".csv", "out_dir": str(self.tree / "outside" / "cohort"),
                          "workers": 0, "settings": {"model": "classical"}},
                "open": {"fixed": "v404", "moving": "v405", "model": "classical", "device": "cpu", "options": {}},
                "prompt": {**session, "points": [{"lps": [0, 0, 0]}]},
                "correct": {**session, "pair": "p1", "lps": [0, 0, 0]}, "delete": {**session, "pair": "p1"},
                "undo": session, "auto": session, "pairs": session, "close": session,
                "text": {**session, "text": "brain"}, "fit": {**session, "pairs": ["p1"], "warm": True},
                "upload": {"name": "f.nii", "offset": 0, "last": False, "data": "", "chunk_sha256": "0" * 64},
                "download": {"path": str(self.tree / "outside" / "nothing"), "offset": 0}}[kind]

    def request(self, kind: str, **fields: Any) -> Dict[str, Any]:
        self.number += 1
        return {"id": f"fz{self.number}", "type": kind, **self.base(kind), **fields}

    def encoded(self, request: Dict[str, Any], why: str, codes: Optional[Set[str]] = None, names: str = "") -> Case:
        return Case(json.dumps(request).encode(), why, request["id"], codes=codes, names=names)

    def path_like(self) -> str:
        choices = ["../../escape/x.nii.gz", "../../../../../../../../fuzz-escape/x", "a/../../b", "~/x.nii.gz",
                   str(self.tree / "outside" / f"abs{self.number}" / "x.nii.gz"), str(self.tree / "tmp" / ".."),
                   str(self.tree / "outside" / "existing.txt"), "/", "/nonexistent-promptregister-fuzz/x",
                   "/" + "x" * 300, "a/" * 3000, "..", ".", "./", "\\..\\..\\windows"]
        path = self.rng.choice(choices)
        self.paths.add(path)
        return path

    def cases(self, count: int) -> List[Case]:
        """`count` lines in a seeded order: a wrong type for every field of every request type, every nested
        malformation, and a path-like string in every field naming a file, folder or session once each, then lines
        of random categories."""
        cases = [self.wrong_type(kind, name) for kind in sorted(KINDS) for name in sorted(KINDS[kind])]
        cases += [self.nested(name, value) for name, values in NESTED.items() for value in values]
        cases += [self.paths_in(kind, [name]) for kind in sorted(KINDS) for name in self.named(kind)]
        cases += [self.case() for _ in range(count - len(cases))]
        self.rng.shuffle(cases)
        return cases

    def wrong_type(self, kind: str, name: str) -> Case:
        """One field of the wrong type: a bad request that names it."""
        value = self.rng.choice(WRONG[KINDS[kind][name]])
        return self.encoded(self.request(kind, **{name: value}), f"wrong type for {kind}.{name}", {"bad_request"},
                            f'"{name}')

    def nested(self, name: str, value: Any) -> Case:
        """Malformed below the top level (checked by the handlers' own parsers)."""
        kind = self.rng.choice([kind for kind in sorted(KINDS) if name in KINDS[kind]])
        return self.encoded(self.request(kind, **{name: value}), f"nested {name}", {"bad_request"})

    @staticmethod
    def named(kind: str) -> List[str]:
        """The fields of a request type that name a file, folder or session."""
        return [name for name, what in KINDS[kind].items()
                if what in ("path", "file", "new_session", "session", "upload_name")]

    def paths_in(self, kind: str, names: List[str]) -> Case:
        """Path-like strings (../, absolute, too long) in these fields: refused, or a file the engine cannot read."""
        request = self.request(kind, **{name: self.path_like() for name in names})
        return self.encoded(request, f"paths in {kind}", {"bad_request", "engine"})

    def case(self) -> Case:
        """One malformed line, its category drawn at random."""
        rng = self.rng
        kind = rng.choice(sorted(KINDS))
        draw = rng.random()
        if draw < 0.25:
            return self.wrong_type(kind, rng.choice(sorted(KINDS[kind])))
        if draw < 0.35:
            name = rng.choice(sorted(NESTED))
            return self.nested(name, rng.choice(NESTED[name]))
        if draw < 0.60:
            kind = kind if self.named(kind) else "load"  # cancel names none
            names = self.named(kind)
            return self.paths_in(kind, rng.sample(names, rng.randint(1, len(names))))
        if draw < 0.65:  # an unknown session
            kind = rng.choice(["prompt", "correct", "delete", "undo", "auto", "pairs", "close", "text", "fit"])
            session = rng.choice(["s1", "s999", "nope", "../s1", "s1/../../x", "S1", "x" * 500])
            return self.encoded(self.request(kind, session=session), "unknown session", {"bad_request"},
                                "unknown session")
        if draw < 0.70:  # an unknown or malformed type
            unknown = rng.choice(["teleport", "HELLO", "_stop", "", 5, ["hello"], {"type": "hello"}, True])
            request = {**self.request("hello"), "type": unknown}
            return self.encoded(request, "unknown type", {"unknown_type"})
        if draw < 0.75:  # a bad id: the answer's id is null
            bad = rng.choice(["", True, 1.5, [], {}, 10 ** 30, None])
            request = {**self.request("hello"), "id": bad}
            return Case(json.dumps(request).encode(), "bad id", None, codes={"bad_request"}, names='"id"')
        if draw < 0.83:  # numbers JSON allows but no field takes: NaN, infinities, 65-bit and 5,000-digit integers
            literal = rng.choice(["NaN", "Infinity", "-Infinity", "1e400", "-1e999", str(2 ** 64), "9" * 5000])
            name = rng.choice(sorted(KINDS[kind]) or ["pad"])
            where = rng.choice(["top", "options", "points"])
            request = self.request(kind, **{name: "@"}) if where == "top" else self.request("register")
            text = json.dumps(request)
            if where == "top":
                text = text.replace('"@"', literal)
            elif where == "options":
                text = text.replace('"marginal_samples": 0', f'"marginal_samples": {literal}')
            else:
                text = text.replace("[0.0, 0.0, 0.0]", f"[0.0, {literal}, 0.0]")
            return Case(text.encode(), f"number {literal[:12]} in {where}", request["id"], codes={"bad_request"})
        return self.raw_case(kind)

    def raw_case(self, kind: str) -> Case:
        """Lines that are not a request at all, or barely: truncated, not UTF-8, nested, blank, huge."""
        rng = self.rng
        request = self.request(kind)
        text = json.dumps(request)
        choice = rng.randrange(10)
        if choice == 0:
            cut = rng.randrange(1, len(text) - 1)
            return Case(text[:cut].encode(), f"truncated at {cut}", None, codes={"bad_json"})
        if choice == 1:
            cut = rng.randrange(len(text))
            junk = bytes(rng.choice([0xFF, 0xFE, 0xC3, 0x80, 0xE2, 0xBF]) for _ in range(rng.randint(1, 4)))
            return Case(text[:cut].encode() + b"\xff" + junk + text[cut:].encode(), "not UTF-8", None,
                        codes={"bad_json"})
        if choice == 2:
            depth = rng.choice([33, 100, 2000])
            nested = rng.choice(["[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth])
            line = rng.choice([nested, text[:-1] + f', "pad": {nested}}}'])
            return Case(line.encode(), f"nested {depth} deep", None, codes={"bad_json"})
        if choice == 3:
            return Case(rng.choice([b"", b" ", b"\t", b"   \t "]), "blank line", replied=False)
        if choice == 4:
            return Case(rng.choice([b"5", b'"hello"', b"null", b"true", b"[]", b"[1, 2]"]), "not an object", None,
                        codes={"bad_json"})
        if choice == 5:  # a string of 100,000 characters in a random field (an answer may not echo it whole)
            name = rng.choice(sorted(KINDS[kind]) or ["pad"])
            return self.encoded(self.request(kind, **{name: "y" * 100_000}), f"long {kind}.{name}")
        if choice == 6:  # a lone surrogate escape in a string
            line = text[:-1] + ', "pad": "\\ud800x"}'
            return Case(line.encode(), "lone surrogate", request["id"], codes={"bad_request"})
        if choice == 7:  # an upload chunk that would inflate to 8 MiB (a 1 MB line could become a gigabyte)
            bomb = zlib.compress(bytes(8 << 20), 9)
            upload = self.request("upload", data=base64.b64encode(bomb).decode(),
                                  chunk_sha256=hashlib.sha256(bytes(8 << 20)).hexdigest())
            return self.encoded(upload, "inflating upload", {"bad_request"})
        if choice == 8:  # a line over the worker's 1 Mi-character limit: dropped unread, answered with id null
            return Case(text[:-1].encode() + b', "pad": "' + b"z" * (1 << 20) + b'"}', "over-long line", None,
                        codes={"bad_request"})
        duplicate = text[:-1] + ', "type": "hello", "type": "teleport"}'  # the last key wins in Python's json
        return Case(duplicate.encode(), "duplicate keys", request["id"], codes={"unknown_type"})


class RawWorker:
    """The worker on raw pipes (bytes in: some lines are not UTF-8), its events read on a thread."""

    def __init__(self, cwd: Path, env: Dict[str, str]):
        self.process = subprocess.Popen([sys.executable, "-m", "promptregister.worker"], cwd=cwd, env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.events: "queue.Queue[dict]" = queue.Queue()
        self.stderr: List[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(line.decode(errors="replace")
                                                           for line in self.process.stderr), daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:  # the protocol stream must hold nothing else
                self.events.put({"id": "?", "type": "not JSON", "line": line[:200].decode(errors="replace")})

    def send(self, line: bytes) -> None:
        self.process.stdin.write(line + b"\n")
        self.process.stdin.flush()

    def next_event(self, why: str) -> dict:
        try:
            return self.events.get(timeout=REPLY_TIMEOUT_S)
        except queue.Empty:
            tail = "".join(self.stderr[-15:])
            raise AssertionError(f"no answer within {REPLY_TIMEOUT_S} s after {why}; alive: "
                                 f"{self.process.poll() is None}; stderr:\n{tail}") from None


def exchange(worker: RawWorker, case: Case, number: int) -> List[dict]:
    """Send the case, then a hello as a marker; the events before both answers are the case's."""
    worker.send(case.line)
    worker.send(json.dumps({"id": f"ping{number}", "type": "hello"}).encode())
    events, answered, pinged = [], not case.replied, False
    while not (answered and pinged):
        event = worker.next_event(f"case {number} ({case.why}): {case.line[:300]!r}; events so far: {events}")
        if event.get("id") == f"ping{number}" and event.get("type") == "result":
            pinged = True
        else:
            events.append(event)
            answered = answered or (event.get("type") in ("result", "error") and event.get("id") == case.request_id)
    return events


def check(case: Case, events: List[dict], number: int) -> None:
    """Exactly one answer (none for a blank line), with the case's id and an allowed code, never "internal"."""
    shown = f"case {number} ({case.why}): {case.line[:400]!r}\nevents: {json.dumps(events)[:1500]}"

    def expect(condition: bool, what: str) -> None:
        if not condition:
            pytest.fail(f"{what}: {shown}", pytrace=False)

    final = [e for e in events if e.get("type") in ("result", "error")]
    others = [e for e in events if e not in final and not (e.get("type") in ("progress", "log")
                                                          and e.get("id") == case.request_id)]
    expect(not others, "events that answer nothing sent")
    expect(len(final) == (1 if case.replied else 0), "not exactly one answer")
    if not final:
        return
    event = final[0]
    expect(event.get("id") == case.request_id, "the answer carries another id")
    if event["type"] == "error":
        expect(event.get("code") in ERROR_CODES and event["code"] != "internal", "a code it must not have")
        expect(len(event.get("message", "")) < 5000, "the message echoes the request whole")
        expect(case.names in event["message"], f"the message does not name {case.names}")
    expect(case.codes is None or event.get("code") in case.codes, f"expected {sorted(case.codes or ())}")


def exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long for the file system
        return False


def snapshot(root: Path) -> Set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    """The worker's world: cwd four folders deep (so ../ stays inside), HOME, TMPDIR, and targets of paths."""
    root = tmp_path / "tree"
    for folder in ("c1/c2/c3/c4", "home", "tmp", "outside"):
        (root / folder).mkdir(parents=True)
    (root / "outside" / "existing.txt").write_text("not an image, not a manifest\n")
    return root


def test_malformed_requests_each_get_one_error_and_nothing_is_written(tree: Path):
    """The whole fuzz on one worker (see the module's docstring for why); then a valid hello and load, and a
    shutdown that leaves the tree as it was."""
    fuzzer = Fuzzer(SEED, tree)
    cases = fuzzer.cases(CASES)
    cwd = tree / "c1" / "c2" / "c3" / "c4"
    outside = {path: exists(cwd / path) for path in fuzzer.paths
               if tree.resolve() not in (cwd / path).resolve().parents}  # named paths that leave the tree
    before = snapshot(tree)
    engine_root = str(Path(promptregister.__file__).resolve().parents[1])
    env = {**os.environ, "HOME": str(tree / "home"), "TMPDIR": str(tree / "tmp"), "PYTHONUNBUFFERED": "1",
           "XDG_CACHE_HOME": str(tree / "home" / ".cache"),
           "PYTHONPATH": os.pathsep.join(filter(None, [engine_root, os.environ.get("PYTHONPATH")]))}
    worker = RawWorker(cwd, env)
    try:
        for number, case in enumerate(cases):
            check(case, exchange(worker, case, number), number)
        worker.send(b'{"id": "after", "type": "hello"}')
        hello = worker.next_event("the hello after the fuzz")
        assert hello["id"] == "after" and hello["protocol"] == PROTOCOL_VERSION, hello
        folder = Path(hello["folder"])
        assert folder.parent == tree / "tmp"
        sample = json.dumps({"id": "sample", "type": "load", "path": str(sample_data.FOLDER / "case001_t1.nii.gz")})
        worker.send(sample.encode())
        loaded = worker.next_event("loading the sample image after the fuzz")
        assert loaded["id"] == "sample" and loaded["type"] == "result" and loaded["shape"] == [64, 64, 64], loaded
        worker.send(b'{"id": "bye", "type": "shutdown"}')
        assert worker.next_event("shutdown")["id"] == "bye"
        assert worker.process.wait(timeout=30) == 0, "".join(worker.stderr[-15:])
    finally:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()
    assert not folder.exists(), "the worker's own folder outlived it"
    assert snapshot(tree) == before, f"written outside the worker's folder: {sorted(snapshot(tree) - before)}"
    for path, existed in outside.items():
        assert exists(cwd / path) == existed, f"the fuzz created {path!r}"
    assert {case.why.split()[0] for case in cases} >= {"wrong", "nested", "paths", "unknown", "bad", "number"}
