import pickle

from fedmist.spec.errors import NO_VALUE, ManifestError, ManifestWarning, ParamError, loc_to_path


def test_full_message_is_one_line() -> None:
    error = ManifestError("job.yaml", "FederatedLearningJob", "mnist-mistnet", "spec.trainingWorkers[0].dataset.name",
                          "no Dataset named 'edge3' is defined", "edge3")
    assert str(error) == ("job.yaml: FederatedLearningJob/mnist-mistnet: spec.trainingWorkers[0].dataset.name: "
                          "no Dataset named 'edge3' is defined (got 'edge3')")


def test_parts_that_do_not_apply_are_left_out() -> None:
    assert str(ParamError("<env>", None, None, "epsilon", "must be a positive number or 'inf'", "abc")) == (
        "<env>: epsilon: must be a positive number or 'inf' (got 'abc')")
    assert str(ManifestError("a.yaml", None, None, None, "YAML syntax error: bad\nthing", line=3)) == (
        "a.yaml:3: YAML syntax error: bad thing")
    assert str(ManifestError("a.yaml", "Model", "m", "spec.url", "required field is missing")) == (
        "a.yaml: Model/m: spec.url: required field is missing")
    assert str(ManifestError("a.yaml", None, None, "x", "bad", None)) == "a.yaml: x: bad (got None)"


def test_long_values_are_shortened_and_newlines_escaped() -> None:
    message = str(ManifestError("a.yaml", None, None, "f", "bad", "x\n" * 200))
    assert "\n" not in message and message.endswith("...)") and len(message) < 160


def test_pickle_round_trip_keeps_fields() -> None:
    error = ParamError("<env>", None, None, "epsilon", "bad", "abc")
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is ParamError and str(clone) == str(error)
    missing = pickle.loads(pickle.dumps(ManifestError("f", "K", "n", "x", "missing", line=2)))
    assert missing.value is NO_VALUE and missing.line == 2


def test_warning_and_loc_formats() -> None:
    warning = ManifestWarning("job.yaml", "Dataset", "d", "spec.fromat", "unknown field, ignored")
    assert str(warning) == "job.yaml: Dataset/d: spec.fromat: unknown field, ignored"
    assert loc_to_path(("spec", "trainingWorkers", 0, "template", "spec", "containers", 1)) == (
        "spec.trainingWorkers[0].template.spec.containers[1]")
