import pytest

from fedmist.spec.quantity import parse_quantity_bytes


@pytest.mark.parametrize(("value", "expected"), [
    ("8Gi", 8 * 2**30), ("512Mi", 512 * 2**20), ("2G", 2_000_000_000), ("1e9", 10**9), ("1E", 10**18),
    ("1.5Ki", 1536), ("1500m", 2), ("128974848", 128974848), (1_000_000, 1_000_000), (1.5e9, 1_500_000_000),
    ("0.5", 1), ("100k", 100_000),
])
def test_quantities(value: object, expected: int) -> None:
    assert parse_quantity_bytes(value) == expected


@pytest.mark.parametrize("value", ["8GB", "eight", "", "1.2.3", "Gi", True, [1], "1e"])
def test_bad_quantities(value: object) -> None:
    with pytest.raises(ValueError, match=r"^not a Kubernetes quantity \(e.g. 512Mi, 8Gi, 2G, 1e9\)$"):
        parse_quantity_bytes(value)


def test_negative_quantity() -> None:
    with pytest.raises(ValueError, match="^must not be negative$"):
        parse_quantity_bytes("-1Gi")
