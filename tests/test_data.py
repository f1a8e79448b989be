import gzip
import os
import pickle
import struct
import tarfile
import threading
from functools import partial
from http.server import HTTPServer, SimpleHTTPRequestHandler

import numpy as np
import pytest
import torch

from prunebench.data import (DatasetError, _fetch, augment, batch_indices, load_dataset, make_synthetic,
                             read_idx)


def write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_fashion_mnist(folder, n_train=40, n_test=20):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    data = {"train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28)),
            "train-labels-idx1-ubyte.gz": np.arange(n_train) % 10,
            "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28)),
            "t10k-labels-idx1-ubyte.gz": np.arange(n_test) % 10}
    for name, array in data.items():
        write_idx(folder / name, array)
    return data


def test_fashion_mnist_idx_roundtrip(tmp_path):
    written = write_fashion_mnist(tmp_path)
    d = load_dataset("fashion_mnist", tmp_path, val_size=10, download=False)
    assert d.train_x.shape == (30, 1, 28, 28) and d.val_x.shape == (10, 1, 28, 28)
    assert d.test_x.dtype == torch.uint8 and d.num_classes == 10 and d.classes[0] == "T-shirt/top"
    assert np.array_equal(d.test_x[:, 0].numpy(), written["t10k-images-idx3-ubyte.gz"])
    # train + val together are exactly the training file, in a deterministic split
    both = torch.cat([d.train_x, d.val_x]).flatten(1)
    original = torch.from_numpy(written["train-images-idx3-ubyte.gz"].astype(np.uint8)).flatten(1)
    assert sorted(map(tuple, both.tolist())) == sorted(map(tuple, original.tolist()))
    again = load_dataset("fashion_mnist", tmp_path, val_size=10, download=False)
    assert torch.equal(d.val_x, again.val_x)


def test_truncated_idx_gives_clear_error(tmp_path):
    write_fashion_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        read_idx(path)
    path.write_bytes(path.read_bytes()[:50])  # a cut-off gzip stream
    with pytest.raises(DatasetError, match=str(path.name)):
        load_dataset("fashion_mnist", tmp_path, download=False)


def test_missing_dataset_names_path_and_fix(tmp_path):
    with pytest.raises(DatasetError, match="lacks train-images"):
        load_dataset("fashion_mnist", tmp_path, download=False)
    with pytest.raises(DatasetError, match="image_folder needs a path"):
        load_dataset("image_folder")
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset("mnist2")


def cifar_batch(n, labels_key, rng, classes):
    return {b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
            labels_key: [int(v) for v in rng.integers(0, classes, n)]}


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_tarball_and_folder(tmp_path, name):
    rng = np.random.default_rng(1)
    folder = tmp_path / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    folder.mkdir()
    if name == "cifar10":
        files = {f"data_batch_{i}": cifar_batch(8, b"labels", rng, 10) for i in range(1, 6)}
        files["test_batch"] = cifar_batch(6, b"labels", rng, 10)
        files["batches.meta"] = {b"label_names": [f"c{i}".encode() for i in range(10)]}
    else:
        files = {"train": cifar_batch(40, b"fine_labels", rng, 100), "test": cifar_batch(6, b"fine_labels", rng, 100),
                 "meta": {b"fine_label_names": [f"c{i}".encode() for i in range(100)]}}
    for fname, obj in files.items():
        (folder / fname).write_bytes(pickle.dumps(obj))
    tarball = tmp_path / "cifar.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    for source in (tarball, tmp_path, folder):
        d = load_dataset(name, source, val_size=4)
        assert d.train_x.shape == (36, 3, 32, 32) and d.test_x.shape == (6, 3, 32, 32)
        assert d.num_classes == (10 if name == "cifar10" else 100)
    test = files["test_batch" if name == "cifar10" else "test"]
    assert np.array_equal(d.test_x.reshape(6, -1).numpy(), test[b"data"])
    # a truncated tarball is one clear error
    tarball.write_bytes(tarball.read_bytes()[:200])
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        load_dataset(name, tarball)


def test_cifar10_as_image_files_loads_as_cifar10(tmp_path):
    """A copy in image files (JPEG in train/<class>/, test/<class>/; folder or tarball) is CIFAR-10 to the claims."""
    from PIL import Image

    from prunebench.data import CIFAR10_CLASSES
    rng = np.random.default_rng(3)
    root = tmp_path / "cifar10-jpeg"
    for split, n in (("train", 2), ("test", 1)):
        for cls in CIFAR10_CLASSES:
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / split / cls / f"{i}.jpg",
                                                                                         quality=75)
    with tarfile.open(tmp_path / "cifar10-jpeg.tar.gz", "w:gz") as tar:
        tar.add(root, arcname="cifar10-jpeg")
    for source in (root, tmp_path / "cifar10-jpeg.tar.gz"):
        d = load_dataset("cifar10", source, val_size=4, cache_dir=tmp_path / "cache")
        assert d.name == "cifar10" and d.classes == CIFAR10_CLASSES
        assert d.train_x.shape == (16, 3, 32, 32) and d.test_x.shape == (10, 3, 32, 32)
    (root / "train" / "truck").rename(root / "train" / "lorry")
    (root / "test" / "truck").rename(root / "test" / "lorry")
    with pytest.raises(DatasetError, match="not cifar10's; use data.name image_folder"):
        load_dataset("cifar10", root, val_size=4, cache_dir=tmp_path / "cache")


def test_cifar_pickle_refuses_code(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for fname in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (folder / fname).write_bytes(pickle.dumps({b"x": partial(print, "owned")}))
    with pytest.raises(DatasetError, match="refusing to load"):
        load_dataset("cifar10", tmp_path)


def test_image_folder(tmp_path, monkeypatch):
    from PIL import Image

    rng = np.random.default_rng(2)
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(tmp_path / split / cls / f"{i}.png")
    cache = tmp_path / "cache"
    d = load_dataset("image_folder", tmp_path, val_size=2, cache_dir=cache)
    assert d.classes == ["cat", "dog"] and d.train_x.shape == (4, 3, 12, 10) and d.test_x.shape == (4, 3, 12, 10)
    # decoded once: a second load memory-maps the cache file and decodes nothing
    assert len(list(cache.glob("image_folder-*.pt"))) == 1
    import prunebench.data as data_module

    monkeypatch.setattr(data_module, "_decode_image_folder", lambda root: pytest.fail("decoded twice"))
    again = load_dataset("image_folder", tmp_path, val_size=2, cache_dir=cache)
    assert torch.equal(again.train_x, d.train_x) and again.classes == d.classes
    monkeypatch.undo()
    # an edited image (new mtime) is decoded again, into a new cache file
    img = tmp_path / "train" / "cat" / "0.png"
    Image.fromarray(np.zeros((12, 10, 3), dtype=np.uint8)).save(img)
    os.utime(img, ns=(img.stat().st_atime_ns, img.stat().st_mtime_ns + 10**9))
    edited = load_dataset("image_folder", tmp_path, val_size=2, cache_dir=cache)
    assert len(list(cache.glob("image_folder-*.pt"))) == 2
    assert edited.train_x.sum() + edited.val_x.sum() < d.train_x.sum() + d.val_x.sum()
    with tarfile.open(tmp_path / "folder.tar.gz", "w:gz") as tar:  # the same images as a tarball
        for split in ("train", "test"):
            tar.add(tmp_path / split, arcname=f"images/{split}")
    packed = load_dataset("image_folder", tmp_path / "folder.tar.gz", val_size=2, cache_dir=cache)
    assert torch.equal(packed.train_x, edited.train_x) and packed.classes == ["cat", "dog"]
    (tmp_path / "cut.tar.gz").write_bytes((tmp_path / "folder.tar.gz").read_bytes()[:200])
    with pytest.raises(DatasetError, match="not a readable tarball"):
        load_dataset("image_folder", tmp_path / "cut.tar.gz", val_size=2, cache_dir=cache)
    assert not list(cache.glob("*.partial-*"))
    broken = tmp_path / "test" / "dog" / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="cannot read .*broken.png.*remove the file"):
        load_dataset("image_folder", tmp_path, val_size=2, cache_dir=cache)
    broken.unlink()
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "test" / "dog" / "odd.png")
    with pytest.raises(DatasetError, match="resize all images"):
        load_dataset("image_folder", tmp_path, val_size=2, cache_dir=cache)


def test_download_checks_the_pinned_checksum(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "file.bin").write_bytes(b"not the dataset")
    server = HTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/file.bin"
        with pytest.raises(DatasetError, match="checksum mismatch"):
            _fetch(url, "md5:" + "0" * 32, tmp_path / "cache", "test-data")
        import hashlib
        good = "md5:" + hashlib.md5(b"not the dataset").hexdigest()
        assert _fetch(url, good, tmp_path / "cache", "test-data").read_bytes() == b"not the dataset"
    finally:
        server.shutdown()


def test_synthetic_is_deterministic_and_learnable_shape():
    a, b = make_synthetic(seed=3), make_synthetic(seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a[:4], b[:4]))
    assert a[0].shape == (512, 3, 16, 16) and set(a[1].tolist()) == {0, 1, 2, 3}
    with pytest.raises(DatasetError, match="synthetic dataset only"):
        load_dataset("fashion_mnist", n_train=3)


def test_augment_crop_and_flip():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.uint8).view(2, 1, 4, 4)
    g = torch.Generator().manual_seed(0)
    flipped = augment(x, pad=0, flip=True, generator=g)
    for i in range(2):
        assert torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], x[i].flip(2))
    cropped = augment(x, pad=1, flip=False, generator=g)
    assert cropped.shape == x.shape
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    for i in range(2):  # every crop is a 4x4 window of the padded image
        windows = [padded[i, :, r:r + 4, c:c + 4] for r in range(3) for c in range(3)]
        assert any(torch.equal(cropped[i], w) for w in windows)


def test_batch_indices_cover_everything():
    batches = list(batch_indices(10, 4, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(batches).tolist()) == list(range(10))
    assert [len(b) for b in batch_indices(10, 4, shuffle=False, drop_last=True)] == [4, 4]
