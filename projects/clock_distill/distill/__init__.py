"""Teacher-student distillation of DETRs: CLoCKDistill (LCMD + TCLD) and the KD baselines."""

from .distiller import Distiller, TeacherCheckpointError, dataset_classes, load_teacher_weights, state_fingerprint
from .feature_loss import FeatureDistillLoss, flatten_levels
from .hooks import STUDENT_EXPORT, DistillationHook, unwrap_distiller
from .logit_loss import LogitDistillLoss, kl_divergence, layer_pairs, query_weights
from .memory_loss import LCMD_PRESETS, MemoryDistillLoss, lcmd_weight_maps
from .target_queries import DistillPoints, KDDETRQueries, TargetQueries, class_code, point_query_groups

__all__ = [
    "Distiller", "TeacherCheckpointError", "dataset_classes", "load_teacher_weights", "state_fingerprint",
    "FeatureDistillLoss", "flatten_levels", "STUDENT_EXPORT", "DistillationHook", "unwrap_distiller",
    "LogitDistillLoss", "kl_divergence", "layer_pairs", "query_weights", "LCMD_PRESETS", "MemoryDistillLoss",
    "lcmd_weight_maps", "DistillPoints", "KDDETRQueries", "TargetQueries", "class_code", "point_query_groups",
]
