"""training.report_to: each engine's own spelling, and the logger's settings reach the engine only when asked for."""

from __future__ import annotations

import pytest

from domainft import process
from domainft.engines import NAMES, get_engine
from domainft.render import render

# Where each engine's rendered config says it (the key names live in each engine's module and template).
SPELLING = {
    "llamafactory": lambda cfg, to: cfg["report_to"] == to,
    "swift": lambda cfg, to: cfg["report_to"] == to,
    "axolotl": lambda cfg, to: {k for k in ("use_tensorboard", "use_wandb", "use_mlflow") if cfg.get(k)}
    == ({f"use_{to}"} if to != "none" else set()),
}


@pytest.mark.parametrize("engine", NAMES)
@pytest.mark.parametrize("to", ["tensorboard", "wandb", "mlflow", "none"])
def test_each_engine_renders_the_logger_in_its_own_key(engine, to, plan_for):
    eng = get_engine(engine)
    plan = plan_for(engine, training={"report_to": to})
    config = eng.config(render(plan))
    assert SPELLING[engine](config, to), config


def test_tensorboard_is_the_default(plan_for):
    assert plan_for("llamafactory").recipe.training.report_to == "tensorboard"


def test_an_online_loggers_settings_reach_the_engine_only_when_the_recipe_asks(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "wandb-key")
    monkeypatch.setenv("WANDB_PROJECT", "coal")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    monkeypatch.setenv("HF_TOKEN", "hf-token")
    offline = process.clean_env(tmp_path, report_to="tensorboard")
    assert not {k for k in offline if k.startswith(("WANDB_API", "WANDB_PROJECT", "MLFLOW", "HTTPS_PROXY"))}
    assert offline["WANDB_MODE"] == "disabled"
    wandb = process.clean_env(tmp_path, report_to="wandb")
    assert (wandb["WANDB_API_KEY"], wandb["WANDB_PROJECT"], wandb["HTTPS_PROXY"]) == ("wandb-key", "coal",
                                                                                      "http://proxy:3128")
    assert "WANDB_MODE" not in wandb and "MLFLOW_TRACKING_URI" not in wandb
    mlflow = process.clean_env(tmp_path, report_to="mlflow")
    assert mlflow["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000" and "WANDB_API_KEY" not in mlflow
    for env in (offline, wandb, mlflow):  # a hub token never: models are pulled by the wrapper
        assert "HF_TOKEN" not in env and env["HF_HUB_OFFLINE"] == "1"
