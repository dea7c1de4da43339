"""The megatron engine's start-up version check (filmorph.train.versions), with fake version
readers: no engine library is needed."""

import pytest

from filmorph.train import versions as V

TESTED = dict(V.TESTED)


def reader(**over):
    """A version reader returning the tested versions, with `over` (dist with _ for -) changed."""
    found = {**TESTED, **{k.replace("_", "-"): v for k, v in over.items()}}
    return lambda dist: found.get(dist)


def test_tested_versions_pass_silently():
    assert V.check_megatron_versions(False, reader(), environ={}) == []
    # a local build tag is the same release
    assert V.check_megatron_versions(
        False, reader(transformer_engine=TESTED["transformer-engine"] + "+4329ff84"),
        environ={}) == []


@pytest.mark.parametrize("bridge", ["0.1.0rc3", "0.7.0", "0.5.2", "0.6.3rc1", None])
def test_untested_bridge_is_refused_naming_both_versions(bridge):
    with pytest.raises(V.UntestedVersionError) as err:
        V.check_megatron_versions(False, reader(megatron_bridge=bridge), environ={})
    msg = str(err.value)
    assert TESTED["megatron-bridge"] in msg
    assert (bridge or "not installed") in msg
    assert "train.megatron.allow_untested_versions" in msg


def test_allow_untested_turns_the_refusal_into_a_warning():
    notes = V.check_megatron_versions(True, reader(megatron_bridge="0.1.0rc3"), environ={})
    assert len(notes) == 1 and "0.1.0rc3" in notes[0] and "allowed by" in notes[0]
    # the workflow passes the option through the environment
    for value, allowed in (("1", True), ("true", True), ("0", False), ("", False)):
        env = {V.ALLOW_ENV: value}
        if allowed:
            assert V.check_megatron_versions(None, reader(megatron_bridge="0.7.0"), environ=env)
        else:
            with pytest.raises(V.UntestedVersionError):
                V.check_megatron_versions(None, reader(megatron_bridge="0.7.0"), environ=env)


def test_other_patch_of_the_series_and_other_core_or_te_are_warnings():
    notes = V.check_megatron_versions(
        False, reader(megatron_bridge="0.6.1", megatron_core="0.19.1",
                      transformer_engine="2.16.0+71bbefb"), environ={})
    assert len(notes) == 3
    text = "\n".join(notes)
    for found, tested in (("0.6.1", "0.6.2"), ("0.19.1", "0.19.2"), ("2.16.0+71bbefb", "2.20.2")):
        assert found in text and tested in text


def test_transformer_engine_is_found_under_its_aliases(monkeypatch):
    seen = []

    def fake_version(name):
        seen.append(name)
        if name == "transformer-engine-cu13":
            return "2.20.2"
        raise V.PackageNotFoundError(name)

    monkeypatch.setattr(V, "version", fake_version)
    assert V.installed_version("transformer-engine") == "2.20.2"
    assert seen[-1] == "transformer-engine-cu13" and len(seen) > 1
    assert V.installed_version("megatron-bridge") is None


def test_ensure_checks_once_per_process_and_logs_the_warnings(monkeypatch, capsys):
    calls = []

    def fake_check():
        calls.append(1)
        return ["megatron-core 0.19.1: the megatron engine was tested with 0.19.2"]

    monkeypatch.setattr(V, "check_megatron_versions", fake_check)
    monkeypatch.setattr(V, "_CHECKED", None)
    assert V.ensure_megatron_versions() == V.ensure_megatron_versions()
    assert len(calls) == 1
    assert capsys.readouterr().err.count("warning: megatron-core 0.19.1") == 1


def test_ensure_raises_for_an_untested_bridge(monkeypatch):
    monkeypatch.setattr(V, "_CHECKED", None)
    monkeypatch.setattr(V, "installed_version", lambda d: {"megatron-bridge": "0.1.0rc3"}.get(d))
    monkeypatch.setenv(V.ALLOW_ENV, "0")
    with pytest.raises(V.UntestedVersionError, match="0.1.0rc3"):
        V.ensure_megatron_versions()
    assert V._CHECKED is None  # not cached: the next call raises again
