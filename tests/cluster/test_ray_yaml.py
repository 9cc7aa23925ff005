"""ray.yaml is a valid Ray cluster-launcher file that installs the project on every node."""

from pathlib import Path

import yaml


def test_ray_yaml_passes_rays_own_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((Path(__file__).parents[2] / "ray.yaml").read_text())
    assert config["provider"]["type"] == "local"
    assert any("pip install" in command and "-e ." in command for command in config["setup_commands"])
    assert any("--dashboard-host=127.0.0.1" in command for command in config["head_start_ray_commands"])
    validate_config(prepare_config(config))
