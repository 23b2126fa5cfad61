"""The peers we compare with, run on the same inputs: itk-elastix and ANTs (antspyx).

Each returns the fixed -> moving displacement field on the fixed grid, so all
methods are scored by the same code.
"""

from __future__ import annotations

import tempfile
import time
from typing import Dict, Tuple

import numpy as np

from promptregister.volume import Volume


def _to_itk(volume: Volume):
    import itk

    image = itk.image_from_array(np.ascontiguousarray(volume.array, dtype=np.float32))
    image.SetSpacing(volume.geometry.spacing)
    image.SetOrigin(volume.geometry.origin)
    image.SetDirection(itk.matrix_from_array(volume.geometry.direction_matrix))
    return image


ELASTIX_SETTINGS: Dict[str, Dict[str, Tuple[str, ...]]] = {
    # name -> parameter-map entries replaced in both maps (affine and B-spline); {} = elastix's defaults
    "default": {},
    "mi-1000": {"MaximumNumberOfIterations": ("1000",)},
    "ncc-1000": {"Metric": ("AdvancedNormalizedCorrelation",), "MaximumNumberOfIterations": ("1000",)},
    "ncc-1000-5mm": {"Metric": ("AdvancedNormalizedCorrelation",), "MaximumNumberOfIterations": ("1000",),
                     "FinalGridSpacingInPhysicalUnits": ("5",)},
}
"""elastix settings tried on the sweep pairs (bench/sweep_peers.py) to find its strongest for same-modality MR.
A "Metric" entry replaces the first metric only, so the B-spline map keeps its bending-energy penalty; grid
entries apply to the B-spline map only."""

ELASTIX_STRONG = "ncc-1000-5mm"
"""elastix's strongest setting on the sweep pairs (docs/benchmarks.md, "2026-12-03: against each peer's strongest setting")."""


def elastix_bspline(fixed: Volume, moving: Volume, on_labels: bool, setting: str = "default") -> Tuple[np.ndarray, float]:
    """Affine + B-spline elastix: its default maps (mean squares on label maps, Mattes MI on images), with the
    entries of ELASTIX_SETTINGS[setting] replaced."""
    import itk

    fixed_image, moving_image = _to_itk(fixed), _to_itk(moving)
    parameters = itk.ParameterObject.New()
    for name in ("affine", "bspline"):
        parameter_map = parameters.GetDefaultParameterMap(name)
        if on_labels:  # keep the B-spline map's second metric (its bending penalty)
            parameter_map["Metric"] = ["AdvancedMeanSquares"] + list(parameter_map["Metric"])[1:]
        for key, value in ELASTIX_SETTINGS[setting].items():
            if key == "Metric":
                parameter_map["Metric"] = list(value) + list(parameter_map["Metric"])[1:]
            elif "Grid" not in key or name == "bspline":
                parameter_map[key] = list(value)
        parameters.AddParameterMap(parameter_map)
    started = time.perf_counter()
    # (passing number_of_threads crashes itk-elastix 0.25.4 with B-spline maps; it
    # uses every core by default, which is 2 on the benchmark machine)
    _, result = itk.elastix_registration_method(fixed_image, moving_image, parameter_object=parameters, log_to_console=False)
    seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as folder:  # transformix writes deformationField.nii there
        field = itk.transformix_deformation_field(moving_image, result, output_directory=folder)
        array = np.asarray(itk.array_from_image(field), dtype=np.float64)
    return array, seconds


def elastix_strong(fixed: Volume, moving: Volume, on_labels: bool) -> Tuple[np.ndarray, float]:
    """elastix's strongest same-modality setting found on the sweep pairs (ELASTIX_STRONG)."""
    return elastix_bspline(fixed, moving, on_labels, setting=ELASTIX_STRONG)


def ants_syncc(fixed: Volume, moving: Volume, on_labels: bool) -> Tuple[np.ndarray, float]:
    """ANTs affine + SyN with the cross-correlation metric ('SyNCC'): ANTs' strongest same-modality setting,
    about 90 times slower than quick SyN on a 64^3 pair (docs/benchmarks.md)."""
    return ants_syn(fixed, moving, on_labels, transform="SyNCC")


def ants_syn(fixed: Volume, moving: Volume, on_labels: bool, transform: str = "SyN") -> Tuple[np.ndarray, float]:
    """ANTs affine + SyN ('SyN', or another antspyx type_of_transform); mean squares on label maps, Mattes MI
    on images (for 'SyN')."""
    import ants

    def to_ants(volume: Volume):
        return ants.from_numpy(
            np.ascontiguousarray(volume.array.transpose(2, 1, 0), dtype=np.float32),
            origin=list(volume.geometry.origin),
            spacing=list(volume.geometry.spacing),
            direction=volume.geometry.direction_matrix,
        )

    fixed_image, moving_image = to_ants(fixed), to_ants(moving)
    started = time.perf_counter()
    options = dict(syn_metric="meansquares", aff_metric="meansquares") if on_labels else {}
    result = ants.registration(fixed_image, moving_image, type_of_transform=transform, **options)
    seconds = time.perf_counter() - started
    # T(p) - p from the transforms ANTs itself applies: warp images holding each
    # LPS coordinate, on a moving grid padded so that nothing maps outside it.
    geometry = moving.geometry
    pad = 40
    size = np.asarray(geometry.size) + 2 * pad
    origin = geometry.index_to_physical(np.full(3, -float(pad)))
    k, j, i = np.meshgrid(*(np.arange(n, dtype=float) for n in size[::-1]), indexing="ij")
    coordinates = (np.stack([i, j, k], axis=-1) - 0) @ geometry.index_to_physical_matrix.T + origin
    field = np.zeros(fixed.geometry.shape + (3,))
    fixed_points = fixed.geometry.voxel_centres()
    for axis in range(3):
        image = ants.from_numpy(
            np.ascontiguousarray(coordinates[..., axis].transpose(2, 1, 0), dtype=np.float32),
            origin=list(origin), spacing=list(geometry.spacing), direction=geometry.direction_matrix,
        )
        mapped = ants.apply_transforms(fixed_image, image, result["fwdtransforms"], interpolator="linear")
        field[..., axis] = mapped.numpy().transpose(2, 1, 0) - fixed_points[..., axis]
    return field, seconds
