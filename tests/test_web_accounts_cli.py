"""`emraudit users …` and `emraudit audit verify`, through click's CliRunner: accounts with
argon2 hashes, mistakes as one-line errors, and an audit trail whose tampering is found."""

from __future__ import annotations

import sqlalchemy as sa
from click.testing import CliRunner

from emraudit.cli import main
from emraudit.config import load_config
from emraudit.store import Store, audit_trail, web_users
from emraudit.web import trail
from web_site import cheap_hashes  # noqa: F401 - fixture


def _site(tmp_path):
    (tmp_path / "emraudit.toml").write_text('[sources.access_log]\npath = "a.csv"\n',
                                            encoding="utf-8")
    return str(tmp_path / "emraudit.toml")


def _run(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input)


def test_users_add_list_disable_passwd(tmp_path, cheap_hashes):
    cfg = _site(tmp_path)
    res = _run("users", "add", "王审核", "--role", "reviewer", "--password-stdin",
               "--config", cfg, input="a long secret pw\n")
    assert res.exit_code == 0, res.output
    res = _run("users", "add", "off1", "--role", "officer", "--config", cfg,
               input="another secret\nanother secret\n")        # the prompt, typed twice
    assert res.exit_code == 0, res.output
    store = Store(load_config(cfg).store_url)
    hashes = store.read_table(web_users)["password_hash"].tolist()
    assert all(h.startswith("$argon2id$") for h in hashes)
    assert "a long secret pw" not in str(hashes)
    for args, needle in ((("users", "add", "王审核", "--role", "reviewer"), "already exists"),
                         (("users", "add", "x y", "--role", "reviewer"), "bad account name"),
                         (("users", "add", "rev9", "--role", "reviewer"), "too short"),
                         (("users", "disable", "nobody"), "no account 'nobody'")):
        res = _run(*args, "--password-stdin", "--config", cfg, input="short\n") \
            if args[1] == "add" else _run(*args, "--config", cfg)
        assert res.exit_code == 2, res.output
        assert needle in res.output and "Traceback" not in res.output
    res = _run("users", "add", "x", "--role", "boss", "--config", cfg)
    assert res.exit_code == 2
    assert _run("users", "disable", "off1", "--config", cfg).exit_code == 0
    res = _run("users", "list", "--config", cfg)
    assert res.exit_code == 0
    lines = {ln.split()[0]: ln for ln in res.output.splitlines()[2:]}
    assert "disabled" in lines["off1"] and "active" in lines["王审核"]
    res = _run("users", "passwd", "off1", "--password-stdin", "--config", cfg,
               input="a new long secret\n")
    assert res.exit_code == 0, res.output
    assert _run("users", "role", "off1", "auditor", "--config", cfg).exit_code == 0
    acts = [(r["action"], r["target"], r["actor"].startswith("cli")) for r in
            store.read_table(audit_trail, order_by=audit_trail.c.seq).to_dict("records")]
    assert acts == [("user_add", "王审核", True), ("user_add", "off1", True),
                    ("user_disable", "off1", True), ("user_passwd", "off1", True),
                    ("user_role", "off1", True)]


def _drop_guards(store: Store) -> None:
    """What someone with the database's owner rights could do first."""
    with store.begin() as c:
        if c.dialect.name == "sqlite":
            c.execute(sa.text("DROP TRIGGER audit_trail_no_update"))
            c.execute(sa.text("DROP TRIGGER audit_trail_no_delete"))
        else:
            c.execute(sa.text("DROP TRIGGER audit_trail_append_only ON audit_trail"))


def check_chain_and_tampering(store: Store, cfg: str) -> None:
    for i in range(6):
        trail.record(store, f"user{i % 2}", "case_view", target=f"C{i:015d}",
                     detail={"n": i}, role="reviewer", client="127.0.0.1")
    res = _run("audit", "verify", "--config", cfg)
    assert res.exit_code == 0, res.output
    assert "intact: 6 rows" in res.output
    # the store refuses changes outright
    for stmt in (audit_trail.update().where(audit_trail.c.seq == 2).values(actor="x"),
                 audit_trail.delete().where(audit_trail.c.seq == 2)):
        try:
            with store.begin() as c:
                c.execute(stmt)
        except sa.exc.DBAPIError as exc:
            assert "append-only" in str(exc)
        else:
            raise AssertionError("the audit trail accepted a change")
    _drop_guards(store)
    with store.begin() as c:
        c.execute(audit_trail.update().where(audit_trail.c.seq == 3)
                  .values(target="C999999999999999"))
    res = _run("audit", "verify", "--config", cfg)
    assert res.exit_code == 1
    assert "row 3: its content does not match its hash" in res.output
    assert "row 4" not in res.output          # the next row still links to the stored hash
    # a removed row breaks the numbering and the link
    with store.begin() as c:
        row3 = dict(c.execute(sa.select(audit_trail).where(audit_trail.c.seq == 3))
                    .mappings().first())
        c.execute(audit_trail.delete().where(audit_trail.c.seq == 3))
    res = _run("audit", "verify", "--config", cfg)
    assert res.exit_code == 1
    assert "row 4: expected row 3" in res.output and "row 4: does not link" in res.output
    # a row rewritten with a fresh hash of its own still breaks the next link
    row3["target"] = "C000000000000777"
    row3["hash"] = trail.row_hash(row3)
    with store.begin() as c:
        c.execute(audit_trail.insert().values(**row3))
    res = _run("audit", "verify", "--config", cfg)
    assert res.exit_code == 1 and "row 4: does not link" in res.output
    assert "row 3" not in res.output


def test_audit_verify_finds_tampered_rows(tmp_path):
    cfg = _site(tmp_path)
    store = Store(load_config(cfg).store_url)
    assert "intact: 0 rows" in _run("audit", "verify", "--config", cfg).output
    check_chain_and_tampering(store, cfg)


def test_racing_writers_never_fork_the_chain(tmp_path):
    from concurrent.futures import ThreadPoolExecutor
    cfg = _site(tmp_path)
    store = Store(load_config(cfg).store_url)
    with ThreadPoolExecutor(4) as pool:
        seqs = list(pool.map(lambda i: trail.record(store, f"u{i}", "case_view"), range(40)))
    assert sorted(seqs) == list(range(1, 41))
    res = trail.verify(store)
    assert res.ok and res.rows == 40
