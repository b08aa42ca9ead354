"""Architecture rules that a reviewer would otherwise have to remember."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_central_imports_only_the_wire_contract_of_edge_agent():
    offenders = []
    for path in (ROOT / "central").rglob("*.py"):
        for name in _imports(path):
            if name.startswith("edge_agent") and not (name == "edge_agent.wire" or name.startswith("edge_agent.wire.")):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


def test_importing_central_loads_no_other_part_of_the_agent():
    code = ("import sys, central.cli, central.ingest.collector, central.store.sqlite, central.cli.demo, "
            "central.governance.search;"
            "print(sorted(m for m in sys.modules if m.startswith('edge_agent')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = eval(out)  # a list literal we printed ourselves
    assert loaded and all(m == "edge_agent" or m.startswith("edge_agent.wire") for m in loaded), loaded


def test_the_runtime_never_imports_tensorflow():
    for pkg in ("edge_agent", "central"):
        for path in (ROOT / pkg).rglob("*.py"):
            assert not any(n.split(".")[0] == "tensorflow" for n in _imports(path)), path


def test_every_cli_command_has_help():
    from click.testing import CliRunner

    from central.cli import main as central_main
    from edge_agent.cli import main as edge_main

    def walk(group, prefix):
        for name, cmd in group.commands.items():
            yield prefix + [name], cmd
            if hasattr(cmd, "commands"):
                yield from walk(cmd, prefix + [name])

    for main in (edge_main, central_main):
        for path, cmd in walk(main, []):
            assert cmd.help, f"{' '.join(path)} has no help text"
            result = CliRunner().invoke(main, [*path, "--help"])
            assert result.exit_code == 0 and "Usage:" in result.output
