"""Tags for each supported language on small fixtures."""

from __future__ import annotations

import pytest

from kcode.context.languages import LANGUAGES, language_for, load_language
from kcode.context.tags import extract_tags

CASES = [
    ("a.py", "class Greeter:\n    def greet(self, name):\n        return helper(name)\n\ndef helper(x):\n    return x\n",
     {"Greeter", "greet", "helper"}, {"helper"}),
    ("a.js", "class Greeter {\n  greet(name) { return helper(name); }\n}\nfunction helper(x) { return x; }\n",
     {"Greeter", "greet", "helper"}, {"helper"}),
    ("a.ts", "interface Shape { area(): number }\nclass Square implements Shape {\n  area(): number { return side(this); }\n}\n"
     "function side(s: Square): number { return 1; }\n", {"Shape", "Square", "side"}, {"side"}),
    ("a.tsx", "function Button(props: Props) {\n  return <div onClick={() => handle(props)} />;\n}\nfunction handle(p: Props) {}\n",
     {"Button", "handle"}, {"handle"}),
    ("a.go", "package main\n\ntype Server struct{}\n\nfunc (s *Server) Start() { run() }\n\nfunc run() {}\n",
     {"Server", "Start", "run"}, {"run"}),
    ("a.rs", "struct Engine;\nimpl Engine {\n    fn start(&self) { ignite(); }\n}\nfn ignite() {}\n",
     {"Engine", "start", "ignite"}, {"ignite"}),
    ("A.java", "public class Account {\n  public void deposit(int x) { audit(x); }\n  void audit(int x) {}\n}\n",
     {"Account", "deposit", "audit"}, {"audit"}),
    ("a.c", "struct point { int x; };\nint area(int w) { return scale(w); }\nint scale(int v) { return v; }\n",
     {"area", "scale"}, {"scale"}),
    ("a.cpp", "namespace geo {\nclass Circle {\n public:\n  double area() { return radius(); }\n  double radius();\n};\n}\n",
     {"Circle", "area"}, {"radius"}),
    ("a.rb", "module Billing\n  class Invoice\n    def total\n      compute_tax\n    end\n  end\nend\n",
     {"Billing", "Invoice", "total"}, {"compute_tax"}),
    ("a.php", "<?php\nclass Mailer {\n  function send($m) { return format_mail($m); }\n}\nfunction format_mail($m) { return $m; }\n",
     {"Mailer", "send", "format_mail"}, {"format_mail"}),
    ("a.cs", "namespace App {\n  class Store {\n    public void Save() { Flush(); }\n    void Flush() {}\n  }\n}\n",
     {"Store", "Save", "Flush"}, {"Flush"}),
]  # fmt: skip


@pytest.mark.parametrize(("filename", "source", "definitions", "references"), CASES, ids=[c[0] for c in CASES])
def test_tags_per_language(filename, source, definitions, references):
    language = language_for(filename)
    assert language is not None, f"no grammar for {filename}"
    tags = extract_tags(source.encode(), language)
    assert definitions <= {d.name for d in tags.definitions}
    assert references <= {name for name, _ in tags.references}


def test_every_language_loads():
    assert all(load_language(name) is not None for name in LANGUAGES)


def test_method_is_shown_inside_its_class():
    tags = extract_tags(CASES[0][1].encode(), "python")
    greet = next(d for d in tags.definitions if d.name == "greet")
    assert [tags.headers[s][1] for s in greet.scopes] == ["class Greeter:"]
    assert tags.headers[greet.header][1] == "    def greet(self, name):"


def test_multiline_signature_is_kept_whole():
    source = b"def build(\n    root,\n    *,\n    task,\n):\n    return 1\n"
    tags = extract_tags(source, "python")
    assert tags.headers[tags.definitions[0].header][1] == "def build(\n    root,\n    *,\n    task,\n):"


def test_unknown_language_is_plain_text():
    assert language_for("notes.txt") is None
    assert extract_tags(b"hello\nworld\n", None).definitions == []


def test_tags_round_trip_through_the_stored_form():
    from kcode.context.tags import FileTags
    from kcode.context.workers import decode_tags, encode_tags

    for language, source in [("rust", CASES[5][1]), ("python", CASES[0][1])]:
        tags = extract_tags(source.encode(), language)
        assert tags.definitions and FileTags.from_record(tags.to_record()) == tags
        assert decode_tags(encode_tags(tags)) == tags


def test_definitions_know_their_line_range_and_files_their_imports():
    source = (
        b"import os\nfrom x import (a,\n    b)\n\nimport sys\n\n\n"
        b"class Foo(Base):\n    x = 1\n\n    @property\n    def bar(self):\n        return 1\n\n"
        b"def baz():\n    pass\n"
    )
    tags = extract_tags(source, "python")
    spans = {d.name: (d.start, d.line, d.end) for d in tags.definitions}
    assert spans == {"Foo": (8, 8, 13), "x": (9, 9, 9), "bar": (11, 12, 13), "baz": (15, 15, 16)}
    assert tags.imports == [(1, 3), (5, 5)]


@pytest.mark.parametrize(
    ("filename", "source", "imports"),
    [
        ("a.go", "package main\n\nimport (\n\t\"fmt\"\n)\n\nfunc main() { fmt.Println() }\n", [(1, 1), (3, 5)]),
        ("a.rs", "use std::io;\nuse std::fmt;\n\nfn f() {}\n", [(1, 2)]),
        ("a.js", "import { a } from './a';\n\nfunction f() { return a; }\n", [(1, 1)]),
        ("A.java", "package p;\nimport java.util.List;\nclass A {}\n", [(1, 2)]),
    ],
)
def test_imports_in_other_languages(filename, source, imports):
    assert extract_tags(source.encode(), language_for(filename)).imports == imports
