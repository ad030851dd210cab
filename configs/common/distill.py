# Building blocks of the distillation configs (configs/clock_distill/): the Distiller around a
# student and a teacher model config, one function per method, and the CPU-sized student of the
# synthetic experiments.
from detectron2.config import LazyCall as L

from clock_distill.distill import (
    Distiller,
    FeatureDistillLoss,
    KDDETRQueries,
    LogitDistillLoss,
    MemoryDistillLoss,
    TargetQueries,
    dataset_classes,
)
from clock_distill.modeling import resnet_channels


def _clockdistill(model):
    """LCMD + TCLD (METHOD.md defaults): box mask with FGD's coefficients; target-aware queries
    with class-code content, one copy; max_conf weights; sigmoid KL at T=1; all layers."""
    # weight 100 on FGD's alpha/beta: at 1 the LCMD gradient on the student encoder was 0.25% of
    # the detection loss's on the LayerNormed DETR memory (tools/kd_grad_norms.py), i.e. inert;
    # at 100 it is about a quarter, as TCLD's. Chosen on the tune split (DINO, README "Tuning").
    model.memory_loss = L(MemoryDistillLoss)(weight=100.0, mask="box", preset="fgd")
    model.logit_loss = L(LogitDistillLoss)(weight=1.0, weight_mode="max_conf", kl="sigmoid", temperature=1.0, layers="all")
    model.distill_queries = L(TargetQueries)(num_copies=1, content="class_code", attention="group")


def _kd_detr(model):
    """KD-DETR: the teacher's query boxes + 300 random boxes, max_conf weights, T = 10."""
    model.logit_loss = L(LogitDistillLoss)(weight=1.0, weight_mode="max_conf", kl="sigmoid", temperature=10.0, layers="all")
    model.distill_queries = L(KDDETRQueries)(num_random=300, teacher_queries=True)


def _feature_kd(model):
    """FGD-style masked MSE on the neck features (the same masks and coefficients as LCMD)."""
    # weight 100 as LCMD's, by the same rule: at 1 its gradient on the neck was 0.4% of the
    # detection loss's, on the backbone 0.2% (benchmarks/results/quick/diagnostics/), i.e. inert.
    model.feature_loss = L(FeatureDistillLoss)(weight=100.0, mask="box", preset="fgd")


METHODS = {"clockdistill": _clockdistill, "kd_detr": _kd_detr, "feature_kd": _feature_kd}


def distiller(student, teacher, teacher_config, teacher_output_dir, student_dataset, teacher_dataset, method):
    """A LazyCall Distiller of ``student`` and ``teacher`` (model configs) with ``method``'s
    losses; the teacher's weights are ``teacher_output_dir/model_final.pth``, what
    ``teacher_config`` writes (override with ``model.teacher_weights=PATH``). The two datasets'
    class lists must agree."""
    model = L(Distiller)(
        student=student,
        teacher=teacher,
        teacher_weights=teacher_output_dir.rstrip("/") + "/model_final.pth",
        teacher_config=teacher_config,
        student_classes=L(dataset_classes)(names=student_dataset),
        teacher_classes=L(dataset_classes)(names=teacher_dataset),
    )
    METHODS[method](model)
    return model


def synthetic_student(model):
    """Shrink a family's CPU-sized synthetic model (configs/*/*_r18_kitti_synthetic.py) into the
    student: R18 at half width, D=64, 2+2 layers (FFN 256), 50 queries. About 3x faster at
    inference than the teacher (the unshrunk model) and a quarter of its parameters."""
    model.backbone.width = 0.5
    model.neck.in_channels = tuple(resnet_channels(18, model.neck.in_features, 0.5))
    model.embed_dim = 64
    model.encoder.num_layers = 2
    model.encoder.d_ffn = 256
    model.decoder_layers.num_layers = 2
    model.decoder_layers.d_ffn = 256
    model.num_queries = 50
    return model


def with_depth(model, depth):
    """A family model config at another ResNet depth (the neck's input channels follow)."""
    model.backbone.depth = depth
    model.neck.in_channels = tuple(resnet_channels(depth, model.neck.in_features))
    return model
