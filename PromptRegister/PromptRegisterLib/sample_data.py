"""The bundled sample pair in Slicer's Sample Data module ("PromptRegister" category): two clicks load both
subjects and their hippocampus labels, ready to register."""

from __future__ import annotations

from typing import Dict, List

from promptregister import sample_data

CATEGORY = "PromptRegister"
SAMPLE_NAME = "PromptRegister hippocampus pair"


def sample_source() -> Dict[str, object]:
    """The keyword arguments of SampleDataLogic.registerCustomSampleDataSource for the bundled pair: local file
    URIs (nothing is downloaded), SHA-256 checksums, the images as volumes and the labels as segmentations."""
    names: List[str] = []
    for subject, role in ((sample_data.FIXED, "fixed"), (sample_data.MOVING, "moving")):
        names += [f"{subject}_t1.nii.gz", f"{subject}_hippocampus.nii.gz"]
    node_names = [f"hippocampus {name.split('_')[0][4:]} {'T1' if '_t1' in name else 'labels'}" for name in names]
    return {
        "category": CATEGORY,
        "sampleName": SAMPLE_NAME,
        "uris": [sample_data.FOLDER.joinpath(name).as_uri() for name in names],
        "fileNames": names,
        "nodeNames": node_names,
        "checksums": [f"SHA256:{sample_data.FILES[name]}" for name in names],
        # loadFileType, not loadFileTypes: Slicer 5.6 knows only the former, 5.8 and later keep it as an alias
        # (Modules/Scripted/SampleData/SampleData.py, registerCustomSampleDataSource); both take a list
        "loadFileType": ["VolumeFile", "SegmentationFile"] * 2,
    }


def register_sample_data() -> None:
    """Add the pair to Slicer's Sample Data module (called once Slicer has started)."""
    import SampleData

    SampleData.SampleDataLogic.registerCustomSampleDataSource(**sample_source())
