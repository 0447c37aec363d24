"""The training config: DeePMD-kit's input parses unchanged; every problem is one ConfigError naming its key path."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from mlpot.config import Config, load_config, resolve_batch_size
from mlpot.errors import ConfigError

HERE = Path(__file__).resolve().parent
DEEPMD_INPUT = HERE / "data" / "deepmd_input_se_e2_a.json"


@pytest.fixture
def raw() -> dict:
    return json.loads(DEEPMD_INPUT.read_text())


def _error(data: dict, base_dir=DEEPMD_INPUT.parent) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(data, base_dir=base_dir)
    return str(info.value)


def test_deepmd_example_parses_unchanged(raw):
    cfg = load_config(DEEPMD_INPUT)
    assert isinstance(cfg, Config)
    # relative system paths resolve against the config file's directory
    root = HERE.parent / "data" / "water"
    assert [Path(p) for p in cfg.training.training_data.systems] == [root / f"data_{k}" for k in range(3)]
    assert [Path(p) for p in cfg.training.validation_data.systems] == [root / "data_3"]
    assert cfg.training.validation_data.numb_btch == 3
    assert cfg.training.numb_steps == 100000 and cfg.training.seed == 10
    assert cfg.learning_rate.decay_steps == 5000 and cfg.learning_rate.stop_lr == 3.51e-8
    assert (cfg.loss.start_pref_f, cfg.loss.limit_pref_f, cfg.loss.start_pref_v) == (1000, 1, 0.0)
    md = cfg.model
    assert md.type_map == ["O", "H"]
    d = md.descriptor
    assert (d.type, d.rcut, d.rcut_smth, d.sel, d.neuron, d.axis_neuron, d.type_one_side, d.resnet_dt,
            d.activation_function, d.precision, d.seed) == (
        "se_e2_a", 6.0, 0.5, [46, 92], [25, 50, 100], 16, True, False, "tanh", "default", 1)
    assert md.fitting_net.neuron == [240, 240, 240] and md.fitting_net.resnet_dt is True
    # the validated tree round-trips through JSON and load_config
    again = load_config(json.loads(cfg.to_json()))
    assert again.model.to_dict() == md.to_dict() and again.training.training_data.systems == cfg.training.training_data.systems


def test_model_section_builds_the_model(raw):
    from mlpot.model import EnergyModel

    raw["model"]["descriptor"].update(neuron=[4, 8], axis_neuron=4)
    raw["model"]["fitting_net"]["neuron"] = [8]
    model = EnergyModel.from_config(load_config(raw, base_dir=DEEPMD_INPUT.parent).model, device="cpu")
    assert model.type_map == ["O", "H"] and model.rcut == 6.0


@pytest.mark.parametrize("kind", ["se_e2_a", "se_a", "se_e2_r"])
def test_from_config_and_load_config_agree(raw, kind):
    """Every default exists once: a minimal descriptor gives the same model through
    EnergyModel.from_config(dict) and through load_config(...).model (DeePMD-kit 3.2's defaults)."""
    from mlpot.model import EnergyModel

    minimal = {"type_map": ["O", "H"], "descriptor": {"type": kind, "sel": [46, 92]}}
    raw["model"] = minimal
    direct = EnergyModel.from_config(minimal, device="cpu")
    via_file = EnergyModel.from_config(load_config(raw, base_dir=DEEPMD_INPUT.parent).model, device="cpu")
    assert direct.get_config() == via_file.get_config()
    d = direct.get_config()["descriptor"]
    assert (d["rcut"], d["rcut_smth"], d["neuron"], d["resnet_dt"], d["activation_function"]) == (6.0, 0.5, [10, 20, 40], False, "tanh")
    if kind != "se_e2_r":
        assert d["type"] == "se_e2_a" and d["axis_neuron"] == 4 and d["type_one_side"] is False
    assert direct.get_config()["fitting_net"]["neuron"] == [120, 120, 120]
    sa, sb = direct.state_dict(), via_file.state_dict()
    assert sa.keys() == sb.keys() and all(v.shape == sb[k].shape for k, v in sa.items())


def test_yaml_and_aliases(tmp_path, raw):
    import yaml

    raw["model"]["descriptor"]["type"] = "se_a"
    raw["model"]["descriptor"]["n_axis_neuron"] = raw["model"]["descriptor"].pop("axis_neuron")
    raw["training"]["stop_batch"] = raw["training"].pop("numb_steps")
    for key in ("training_data", "validation_data"):
        raw["training"][key]["systems"] = [str((DEEPMD_INPUT.parent / p).resolve()) for p in raw["training"][key]["systems"]]
    path = tmp_path / "in.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg = load_config(path)
    assert cfg.model.descriptor.type == "se_e2_a" and cfg.model.descriptor.axis_neuron == 16
    assert cfg.training.numb_steps == 100000


def test_precision_override(raw):
    raw["training"]["precision"] = "float32"
    cfg = load_config(raw, base_dir=DEEPMD_INPUT.parent)
    md = cfg.model.with_precision(cfg.training.precision)
    assert md.descriptor.precision == md.fitting_net.precision == "float32"
    assert cfg.model.descriptor.precision == "default"  # the validated tree itself is unchanged (frozen)


def test_config_is_frozen(raw):
    from pydantic import ValidationError

    cfg = load_config(raw, base_dir=DEEPMD_INPUT.parent)
    with pytest.raises(ValidationError):
        cfg.model.descriptor.sel = [1, 2]
    changed = cfg.model.with_descriptor(sel=[10, 20])
    assert changed.descriptor.sel == [10, 20] and cfg.model.descriptor.sel == [46, 92]


def test_unknown_key_suggests_the_intended_one(raw):
    raw["training"]["numb_stepz"] = 10
    assert _error(raw) == "training.numb_stepz: unknown key (did you mean `numb_steps`?)"


def test_neutral_only_keys(raw):
    raw["model"]["descriptor"]["exclude_types"] = []  # accepted at the neutral value
    raw["model"]["fitting_net"]["trainable"] = [True, True, True, True]
    load_config(raw, base_dir=DEEPMD_INPUT.parent)
    raw["model"]["fitting_net"]["numb_fparam"] = 2
    assert _error(raw).startswith("model.fitting_net.numb_fparam: expected 0 ")


def test_toy_descriptor_from_the_registry(raw):
    """A descriptor registered from outside the package is a valid model.descriptor.type."""
    from typing import Literal

    from mlpot.config.model import DescriptorConfig
    from mlpot.descriptors import DESCRIPTORS

    class ToyConfig(DescriptorConfig):
        type: Literal["toy"] = "toy"
        width: int = 3

    DESCRIPTORS.add("toy", object, aliases=("toy_alias",), config=ToyConfig)
    try:
        raw["model"]["descriptor"] = {"type": "toy_alias", "rcut": 3.0, "width": 5}
        cfg = load_config(raw, base_dir=DEEPMD_INPUT.parent)
        assert isinstance(cfg.model.descriptor, ToyConfig) and cfg.model.descriptor.width == 5
        assert cfg.to_dict()["model"]["descriptor"]["width"] == 5
        raw["model"]["descriptor"]["widht"] = 1
        assert "model.descriptor.widht: unknown key (did you mean `width`?)" in _error(raw)
    finally:
        DESCRIPTORS.remove("toy")


def test_resolve_batch_size():
    assert resolve_batch_size("auto", 192) == 1
    assert resolve_batch_size("auto", 7) == 5  # 5·7 = 35 >= 32 > 4·7
    assert resolve_batch_size("auto", 8) == 4  # 4·8 = 32 exactly
    assert resolve_batch_size("auto:100", 10) == 10
    assert resolve_batch_size(3, 100) == 3
    assert resolve_batch_size([2, 5], 10, index=1) == 5


# ----------------------------------------------------------------------------- one test per error path
def test_unknown_key(raw):
    raw["model"]["descriptor"]["rcutt"] = 6.0
    msg = _error(raw)
    assert "model.descriptor.rcutt" in msg and "unknown key" in msg


def test_unknown_top_level_key(raw):
    raw["trainig"] = {}
    assert "trainig: unknown key" in _error(raw)


def test_wrong_type(raw):
    raw["model"]["descriptor"]["neuron"] = "25,50"
    msg = _error(raw)
    assert "model.descriptor.neuron" in msg and "valid list" in msg


def test_wrong_type_numb_steps(raw):
    raw["training"]["numb_steps"] = "many"
    msg = _error(raw)
    assert "training.numb_steps" in msg and "integer" in msg and "'many'" in msg


def test_negative_cutoff(raw):
    raw["model"]["descriptor"]["rcut"] = -6.0
    msg = _error(raw)
    assert msg.startswith("model.descriptor.rcut:") and "positive" in msg and "-6.0" in msg


def test_rcut_smth_not_below_rcut(raw):
    raw["model"]["descriptor"]["rcut_smth"] = 6.0
    msg = _error(raw)
    assert msg.startswith("model.descriptor.rcut_smth:") and "rcut_smth < rcut = 6.0" in msg


def test_missing_system_path(raw):
    raw["training"]["training_data"]["systems"][1] = "../../data/water/data_9"
    msg = _error(raw)
    assert msg.startswith("training.training_data.systems:") and "entry 1" in msg and "data_9" in msg


def test_missing_validation_system(raw):
    raw["training"]["validation_data"]["systems"] = "nowhere"
    assert _error(raw).startswith("training.validation_data.systems:")


def test_decay_steps_not_positive(raw):
    raw["learning_rate"]["decay_steps"] = 0
    msg = _error(raw)
    assert msg.startswith("learning_rate.decay_steps:") and "positive" in msg


def test_stop_lr_above_start_lr(raw):
    raw["learning_rate"]["stop_lr"] = 0.01
    msg = _error(raw)
    assert msg.startswith("learning_rate.stop_lr:") and "stop_lr <= start_lr = 0.001" in msg


def test_missing_required_key(raw):
    del raw["model"]["type_map"]
    assert _error(raw) == "model.type_map: missing required key"


def test_sel_length_must_match_type_map(raw):
    raw["model"]["descriptor"]["sel"] = [46]
    msg = _error(raw)
    assert msg.startswith("model:") and "descriptor.sel" in msg and "2 numbers" in msg


def test_bad_batch_size(raw):
    raw["training"]["training_data"]["batch_size"] = "auto:x"
    msg = _error(raw)
    assert msg.startswith("training.training_data.batch_size:") and "'auto:N'" in msg


def test_negative_batch_size(raw):
    raw["training"]["training_data"]["batch_size"] = 0
    assert _error(raw).startswith("training.training_data.batch_size: expected a positive number")


def test_unknown_descriptor_type(raw):
    raw["model"]["descriptor"]["type"] = "dpa3"  # se_atten is a descriptor since issue 15
    msg = _error(raw)
    assert msg.startswith("model.descriptor.type:") and "se_e2_a" in msg


def test_unsupported_loss_option(raw):
    raw["loss"]["start_pref_ae"] = 1.0
    assert _error(raw).startswith("loss.start_pref_ae: expected 0")


def test_negative_prefactor(raw):
    raw["loss"]["limit_pref_f"] = -1
    assert _error(raw).startswith("loss.limit_pref_f: expected a non-negative prefactor")


def test_bad_device(raw):
    raw["training"]["device"] = "tpu"
    assert _error(raw).startswith("training.device:")


def test_several_problems_reported_together(raw):
    raw["model"]["descriptor"]["rcut"] = 0
    raw["learning_rate"]["decay_steps"] = -1
    msg = _error(raw)
    assert "2 problems" in msg and "model.descriptor.rcut" in msg and "learning_rate.decay_steps" in msg


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(bad)


def test_relative_paths_against_config_dir(tmp_path, raw):
    sub = tmp_path / "cfgdir"
    sub.mkdir()
    data = copy.deepcopy(raw)
    water = (HERE.parent / "data" / "water").resolve()
    import os

    rel = os.path.relpath(water, sub)
    data["training"]["training_data"]["systems"] = [f"{rel}/data_0"]
    data["training"]["validation_data"]["systems"] = [f"{rel}/data_3"]
    (sub / "in.json").write_text(json.dumps(data))
    cfg = load_config(sub / "in.json")
    assert Path(cfg.training.training_data.systems[0]).resolve() == water / "data_0"


def test_shared_base_for_other_inputs(tmp_path):
    """The MD input can use the same base: the same mistake reads the same way, and relative paths
    resolve against the input file's folder."""
    from typing import Optional

    from pydantic import Field, ValidationInfo, field_validator

    from mlpot.config.base import StrictModel, read_tree, resolve_input_path, validate

    class MDLike(StrictModel):
        dt: float = Field(1.0, gt=0)
        structure: Optional[str] = None

        @field_validator("structure")
        @classmethod
        def _path(cls, v: Optional[str], info: ValidationInfo) -> Optional[str]:
            return None if v is None else resolve_input_path(v, info)

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "water.xyz").write_text("")
    (tmp_path / "sub" / "md.yaml").write_text("dtt: 0.5\n")
    with pytest.raises(ConfigError) as info:
        validate(MDLike, read_tree(tmp_path / "sub" / "md.yaml"), str(tmp_path / "sub" / "md.yaml"))
    assert str(info.value).endswith("md.yaml: dtt: unknown key (did you mean `dt`?)")
    with pytest.raises(ConfigError, match=r"^dt: expected a positive number, found -1"):
        validate(MDLike, {"dt": -1})
    cfg = validate(MDLike, {"structure": "water.xyz", "_comment": "ok"}, base_dir=tmp_path / "sub")
    assert Path(cfg.structure) == tmp_path / "sub" / "water.xyz"
