"""Starting or joining Ray, without a cluster: the token file and a wrong tune.address."""

from __future__ import annotations

import stat

import pytest
from launching import free_port

from pgnm.atomic import create_private
from pgnm.config import ConfigError, load_config, with_overrides
from pgnm.tune.search import local_ray


def test_a_secret_is_owner_only_from_the_start_and_never_replaced(tmp_path):
    token = tmp_path / "ray" / "auth_token"
    assert create_private(token, "first")
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert not create_private(token, "second")  # a crashed run's token stays valid
    assert token.read_text() == "first"
    assert [p.name for p in token.parent.iterdir()] == ["auth_token"]


def test_an_unreachable_address_is_a_config_error_naming_tune_address(tmp_path):
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    config = with_overrides(load_config(), {"tune.address": address}, "test")
    with pytest.raises(ConfigError, match=rf"tune.address='{address}': no Ray head answers"):
        with local_ray(config, tmp_path / "ray"):
            pass


def test_tune_storage_is_where_the_experiment_lives(tmp_path, monkeypatch):
    from pgnm.tune.search import _storage

    base = with_overrides(load_config(), {"name": "s"}, "test")
    assert _storage(base, tmp_path / "s") == (str(tmp_path / "s"), "tune")
    uri = with_overrides(base, {"tune.storage": "s3://bucket/searches/"}, "test")
    assert _storage(uri, tmp_path / "s") == ("s3://bucket/searches", "s")
    monkeypatch.chdir(tmp_path)  # resolved once, by the driver: trials start elsewhere
    shared = with_overrides(base, {"tune.storage": "shared"}, "test")
    assert _storage(shared, tmp_path / "s") == (str(tmp_path / "shared"), "s")
