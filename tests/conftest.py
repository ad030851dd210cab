import pytest


@pytest.fixture(scope="session")
def synthetic_kitti(tmp_path_factory):
    """A small synthetic KITTI root (30 images, 320x96) shared by the tests of a session."""
    from clock_distill.data.synthetic import generate_synthetic_kitti

    root = tmp_path_factory.mktemp("kitti_synthetic")
    generate_synthetic_kitti(root, num_images=30, seed=3, width=320, height=96)
    return root
