"""`[reports] group`: report folders 2750 and files 0640 owned by that group, so a
compliance team reads them under its own accounts; without it, owner-only as before."""

from __future__ import annotations

import grp
import os
import stat

import pytest
from click.testing import CliRunner

from emraudit.cli import main
from emraudit.reports import files
from web_site import cheap_hashes, web_master, web_site  # noqa: F401 - fixtures


@pytest.fixture(autouse=True)
def _owner_only_after():
    yield
    files.set_group(None)


def _modes(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            if not os.path.islink(p):
                st = os.stat(p)
                out[p] = (stat.S_IMODE(st.st_mode), st.st_gid, stat.S_ISDIR(st.st_mode))
    return out


def test_report_files_are_readable_by_the_configured_group(web_site):
    group = grp.getgrgid(os.getgid()).gr_name
    text = web_site.read_text(encoding="utf-8").replace(
        "[reports]\n", f'[reports]\ngroup = "{group}"\n')
    web_site.write_text(text, encoding="utf-8")
    res = CliRunner().invoke(main, ["report", "scan", "--config", str(web_site)])
    assert res.exit_code == 0, res.output
    folder = res.output.strip().splitlines()[-1].rsplit("/", 1)[0]
    modes = _modes(folder)
    assert any(p.endswith("ledger.xlsx") for p in modes)
    for p, (mode, gid, is_dir) in modes.items():
        assert gid == os.getgid(), p
        assert mode == ((0o750 | stat.S_ISGID) if is_dir else 0o640), (p, oct(mode))
    root = stat.S_IMODE(os.stat(os.path.dirname(folder)).st_mode)
    assert root == 0o750 | stat.S_ISGID


def test_without_a_group_reports_stay_owner_only(web_site):
    res = CliRunner().invoke(main, ["report", "scan", "--config", str(web_site)])
    assert res.exit_code == 0, res.output
    folder = res.output.strip().splitlines()[-1].rsplit("/", 1)[0]
    for p, (mode, _gid, is_dir) in _modes(folder).items():
        assert mode == (0o700 if is_dir else 0o600), (p, oct(mode))


def test_an_unknown_group_is_a_configuration_error(web_site):
    text = web_site.read_text(encoding="utf-8").replace(
        "[reports]\n", '[reports]\ngroup = "no-such-group-xyz"\n')
    web_site.write_text(text, encoding="utf-8")
    res = CliRunner().invoke(main, ["report", "scan", "--config", str(web_site)])
    assert res.exit_code == 2
    assert "reports.group" in res.output and "no group 'no-such-group-xyz'" in res.output
