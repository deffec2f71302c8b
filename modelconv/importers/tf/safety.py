"""The ops no SavedModel converted here may hold: every route refuses them before anything runs."""

from __future__ import annotations

from modelconv.errors import UnsafeModelError
from modelconv.importers.tf.files.saved_model import SavedModelProto, reachable_ops

#: ops that read/write files, run Python or map memory: never inside an inference graph
UNSAFE_TF_OPS = {
    "ReadFile", "WriteFile", "PyFunc", "PyFuncStateless", "EagerPyFunc", "MatchingFiles",
    "Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2", "RestoreSlice",
    "MergeV2Checkpoints", "ImmutableConst", "WholeFileReader", "WholeFileReaderV2",
    "TFRecordReader", "TFRecordReaderV2", "FixedLengthRecordReader",
    "FixedLengthRecordReaderV2", "TextLineReader", "TextLineReaderV2", "IdentityReader",
    "IdentityReaderV2", "LMDBReader", "ReaderReadV2", "DeleteSessionTensor",
    "DebugIdentity", "DebugIdentityV2", "DebugIdentityV3", "PrintV2", "Print",
    "WriteSummary", "WriteScalarSummary", "WriteImageSummary", "WriteHistogramSummary",
    "WriteAudioSummary", "WriteGraphSummary", "WriteRawProtoSummary", "CreateSummaryFileWriter",
    "CreateSummaryDbWriter", "ExperimentalDatasetToTFRecord", "DatasetToTFRecord",
    "SaveDataset", "SaveDatasetV2", "LoadDataset", "InitializeTableFromTextFile",
    "InitializeTableFromTextFileV2", "DecodeProtoV2", "EncodeProto",
}
#: what the checkpoint saver's own save/restore functions hold (allowed there only)
CHECKPOINT_OPS = {"Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2", "RestoreSlice",
                  "MergeV2Checkpoints"}


def refuse_unsafe_ops(saved: SavedModelProto, display: str) -> None:
    """Refuse file/process ops anywhere the SavedModel can run (as the tf2onnx route does
    for its signature), read from saved_model.pb without TensorFlow.

    Args:
        saved: the SavedModel read by :func:`read_saved_model`.
        display: how the folder is named in errors.

    Raises:
        UnsafeModelError: naming the ops and up to three nodes holding each.
        ModelLoadError: the graph is corrupt.
    """
    ops, saver_ops = reachable_ops(saved)
    unsafe = {op: names for op, names in ops.items() if op in UNSAFE_TF_OPS}
    unsafe.update({op: names for op, names in saver_ops.items()
                   if op in UNSAFE_TF_OPS and op not in CHECKPOINT_OPS})
    if unsafe:
        raise UnsafeModelError(
            "SavedModel contains file/process ops: "
            + ", ".join(f"{op} ({', '.join(n[:3])})" for op, n in sorted(unsafe.items())),
            path=display, hint="modelconv refuses graphs that read/write files or run Python")
