import pytest


@pytest.fixture(scope="session")
def synthetic_kitti(tmp_path_factory):
    """A small synthetic KITTI root (30 images, 320x96) shared by the tests of a session."""
    from clock_distill.data.synthetic import generate_synthetic_kitti

    root = tmp_path_factory.mktemp("kitti_synthetic")
    generate_synthetic_kitti(root, num_images=30, seed=3, width=320, height=96)
    return root


# `make test` runs the files in 2 processes (pytest-xdist --dist loadfile). The slowest files go
# first so that they do not end the run alone (longest-first scheduling; xdist hands out files
# in collection order), and each process keeps to one torch thread: two processes with two
# threads each on 2 cores ran the learning tests 3x slower than one process alone.
SLOWEST_FIRST = ("test_learning_dab_detr.py", "test_learning_dino.py", "test_learning_deformable_detr.py",
                 "test_ddp_cpu.py", "test_resume.py", "test_distill_cli.py", "test_demo.py",
                 "test_synthetic.py", "test_benchmark_speed.py", "test_configs.py", "test_bad_input.py",
                 "test_benchmark_distill.py")


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keeps its order


def pytest_configure(config):
    import os

    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)
