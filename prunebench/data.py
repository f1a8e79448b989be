"""Datasets as in-memory uint8 tensors, batching by index slicing, augmentation on batch tensors.

Sources, in order: an explicit path; a system location (Debian's dataset-fashion-mnist); a
download with a pinned checksum. Every failure is one `DatasetError` naming the path and the fix.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import shutil
import struct
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import DatasetError
from .io import save_torch

FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
# md5 of the official .gz files (the Debian package recompresses them, so its files differ;
# those are validated by their IDX headers and sizes instead).
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "md5:25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "md5:bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "md5:bb300cfdad3c16e7a12a480ee83cd310",
}
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
CIFAR_URLS = {
    "cifar10": ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                "md5:c58f30108f718f92721af3b95e74349a"),
    "cifar100": ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                 "md5:eb9058c3a382ffc7106e4002c42a8d85"),
}
DATASET_NAMES = ("fashion_mnist", "cifar10", "cifar100", "image_folder", "synthetic")


@dataclass
class Dataset:
    """Train/validation/test images as uint8 NCHW tensors plus int64 labels."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # the run's training augmentation (the config's pretrain section): every training stage uses it unless it
    # sets its own, and BN statistics are re-estimated under it (the weights were trained on its statistics)
    augment_pad: int = 2
    augment_flip: bool = True

    @property
    def in_channels(self) -> int:
        return self.train_x.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.train_x.shape[2:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def sample(self, images: int, seed: int = 0) -> torch.Tensor:
        """Indices of a seeded random subset of `images` training images (all of them when fewer): never
        "the first N", which in a class-ordered split (an image folder) are one or two classes."""
        n = len(self.train_x)
        return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:min(images, n)]

    def augmented(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A batch of training images under the run's augmentation."""
        return augment(x, pad=self.augment_pad, flip=self.augment_flip, generator=generator)

    def split(self, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The (images, labels) of 'train', 'val' or 'test'."""
        if which not in ("train", "val", "test"):
            raise ValueError(f"unknown split {which!r}; use 'train', 'val' or 'test'")
        return getattr(self, f"{which}_x"), getattr(self, f"{which}_y")


# ---------------------------------------------------------------------------- loading


def load_dataset(name: str, path: str | os.PathLike | None = None, *, val_size: int = 5000,
                 cache_dir: str | os.PathLike | None = None, download: bool = True,
                 **synthetic_options) -> Dataset:
    """Load a dataset by name and carve a deterministic validation split from its training set."""
    if synthetic_options and name != "synthetic":  # before any loading: a wrong option fails at once
        raise DatasetError(f"options {sorted(synthetic_options)} apply to the synthetic dataset only")
    if name == "fashion_mnist":
        train_x, train_y, test_x, test_y = _load_fashion_mnist(path, cache_dir, download)
        classes = FASHION_MNIST_CLASSES
    elif name in ("cifar10", "cifar100") and path is not None and _holds_images(Path(path), name):
        train_x, train_y, test_x, test_y, classes = _cifar_images(name, Path(path), cache_dir)
    elif name in ("cifar10", "cifar100"):
        train_x, train_y, test_x, test_y, classes = _load_cifar(name, path, cache_dir, download)
    elif name == "image_folder":
        if path is None:
            raise DatasetError("image_folder needs a path: a root with train/<class>/*.png and "
                               "test/<class>/*.png (or a .tar.gz of it); set data.path in the config or --data-path")
        root = _unpacked(Path(path), cache_dir) if Path(path).is_file() else Path(path)
        train_x, train_y, test_x, test_y, classes = _load_image_folder(root, cache_dir)
    elif name == "synthetic":
        train_x, train_y, test_x, test_y, classes = make_synthetic(**synthetic_options)
    else:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    return _with_validation_split(name, train_x, train_y, test_x, test_y, classes, val_size)


def _with_validation_split(name, train_x, train_y, test_x, test_y, classes, val_size) -> Dataset:
    if not 0 <= val_size < len(train_x):
        raise DatasetError(f"val_size={val_size} must be in [0, {len(train_x)}) for {name}")
    # A fixed generator: the split is the same on every machine and every run. Both parts keep the
    # permutation's random order (an image folder is read class by class), so no slice of them is one class.
    order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(20181))
    val_idx, train_idx = order[:val_size], order[val_size:]
    tx = train_x[train_idx]
    scaled = tx.float().div_(255)
    mean = tuple(scaled.mean(dim=(0, 2, 3)).tolist())
    std = tuple(scaled.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist())
    return Dataset(name, tx, train_y[train_idx], train_x[val_idx], train_y[val_idx],
                   test_x, test_y, list(classes), mean, std)


def _fetch(url: str, known_hash: str, cache_dir, what: str) -> Path:
    """Download one file with a pinned checksum into the cache (pooch verifies it)."""
    import pooch

    target = Path(cache_dir or default_cache_dir())
    try:
        return Path(pooch.retrieve(url, known_hash=known_hash, path=target, progressbar=False))
    except ValueError as err:  # pooch raises ValueError on a checksum mismatch
        raise DatasetError(f"{what}: checksum mismatch for {url} ({err}); delete the file in "
                           f"{target} and retry") from None
    except Exception as err:
        raise DatasetError(f"{what} is not available locally and the download from {url} failed "
                           f"({type(err).__name__}: {err}); pass the path to a local copy") from None


def default_cache_dir() -> Path:
    return Path(os.environ.get("PRUNEBENCH_DATA", Path.home() / ".cache" / "prunebench"))


# --- Fashion-MNIST (IDX)


def read_idx(path: Path) -> np.ndarray:
    """Parse one gzipped IDX file (unsigned bytes), checking magic number and length."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DatasetError(f"missing IDX file {path}") from None
    except (OSError, EOFError) as err:
        raise DatasetError(f"{path} is not a readable gzip file ({err}); the file is truncated or "
                           f"corrupt: delete it and obtain it again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"{path} is not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path} is truncated (header incomplete); obtain the file again")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DatasetError(f"{path} has {len(raw)} bytes but its header promises {expected}; the "
                           f"file is truncated or corrupt: obtain it again")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _load_fashion_mnist(path, cache_dir, download):
    names = list(FASHION_MNIST_FILES)
    candidates = [Path(path)] if path is not None else [FASHION_MNIST_SYSTEM_DIR]
    for folder in candidates:
        if all((folder / n).exists() for n in names):
            files = [folder / n for n in names]
            break
    else:
        if path is not None:
            missing = [n for n in names if not (Path(path) / n).exists()]
            raise DatasetError(f"Fashion-MNIST: {path} lacks {', '.join(missing)}; point the path "
                               f"at a folder with the four IDX .gz files")
        if not download:
            raise DatasetError(
                f"Fashion-MNIST not found in {FASHION_MNIST_SYSTEM_DIR}; install it with "
                f"'apt-get install dataset-fashion-mnist', pass a path, or allow the download")
        files = [_fetch(FASHION_MNIST_URL + n, h, cache_dir, "Fashion-MNIST")
                 for n, h in FASHION_MNIST_FILES.items()]
    train_x, train_y, test_x, test_y = (read_idx(f) for f in files)
    for images, labels, f in ((train_x, train_y, files[0]), (test_x, test_y, files[2])):
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DatasetError(f"{f}: images {images.shape} and labels {labels.shape} do not match")
    return (torch.from_numpy(train_x.copy()).unsqueeze(1), torch.from_numpy(train_y.astype(np.int64)),
            torch.from_numpy(test_x.copy()).unsqueeze(1), torch.from_numpy(test_y.astype(np.int64)))


# --- CIFAR (python pickle batches)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches: numpy arrays and plain containers only, nothing executable."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset file")


def _unpickle(raw: bytes, where: str) -> dict:
    try:
        return _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as err:
        raise DatasetError(f"{where} is not a valid CIFAR pickle batch ({err}); the file is "
                           f"truncated or corrupt: obtain it again") from None


def _load_cifar(name, path, cache_dir, download):
    folder = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
    train_names = [f"data_batch_{i}" for i in range(1, 6)] if name == "cifar10" else ["train"]
    test_name = "test_batch" if name == "cifar10" else "test"
    meta_name = "batches.meta" if name == "cifar10" else "meta"
    label_key = b"labels" if name == "cifar10" else b"fine_labels"
    names_key = b"label_names" if name == "cifar10" else b"fine_label_names"

    if path is None:
        if not download:
            raise DatasetError(f"{name}: no path given and download disabled; pass the path to "
                               f"the official python tarball or its extracted folder")
        url, known_hash = CIFAR_URLS[name]
        path = _fetch(url, known_hash, cache_dir, name)
    path = Path(path)
    members = {n: f"{folder}/{n}" for n in [*train_names, test_name, meta_name]}
    if path.is_dir():
        root = path / folder if (path / folder).is_dir() else path
        read = {}
        for n in members:
            if not (root / n).exists():
                raise DatasetError(f"{name}: {root / n} is missing; point the path at the official "
                                   f"tarball or the folder that holds {folder}/")
            read[n] = (root / n).read_bytes()
    elif path.exists():
        try:
            with tarfile.open(path, "r:gz") as tar:
                read = {n: tar.extractfile(m).read() for n, m in members.items()}
        except (tarfile.TarError, KeyError, EOFError, OSError, AttributeError) as err:
            raise DatasetError(f"{path} is not a complete {name} python tarball ({err}); it is "
                               f"truncated or corrupt: delete it and obtain it again") from None
    else:
        raise DatasetError(f"{name}: {path} does not exist; pass the official tarball or its folder")

    def batch(n):
        d = _unpickle(read[n], f"{path}:{n}")
        try:
            x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            y = np.asarray(d[label_key], dtype=np.int64)
        except (KeyError, ValueError) as err:
            raise DatasetError(f"{path}:{n} lacks CIFAR fields or has the wrong shape ({err})") from None
        return x, y

    parts = [batch(n) for n in train_names]
    train_x = np.concatenate([p[0] for p in parts])
    train_y = np.concatenate([p[1] for p in parts])
    test_x, test_y = batch(test_name)
    classes = [c.decode() for c in _unpickle(read[meta_name], f"{path}:{meta_name}")[names_key]]
    return (torch.from_numpy(train_x), torch.from_numpy(train_y),
            torch.from_numpy(test_x), torch.from_numpy(test_y), classes)


# --- image folders (mini-ImageNet, CIFAR-as-images)

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _holds_images(path: Path, name: str) -> bool:
    """Whether a CIFAR path is a copy as image files (train/<class>/, test/<class>/, or a tarball of them) rather
    than the official python batches: the first tarball member or the folder's entries tell."""
    folder = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
    if path.is_dir():
        return not (path / folder).is_dir() and not (path / "test_batch").exists() and not (path / "test").is_file()
    if not path.is_file():
        return False
    try:
        with tarfile.open(path) as tar:
            first = tar.next()
    except (tarfile.TarError, EOFError, OSError):
        return False  # the python loader says what is wrong with it
    return first is not None and not first.name.lstrip("./").startswith(folder)


def _cifar_images(name: str, path: Path, cache_dir=None):
    """CIFAR as image files: loaded as an image folder, checked to be CIFAR (its classes in CIFAR's label order,
    32 x 32 RGB), so that it counts as the dataset the papers report on."""
    root = _unpacked(path, cache_dir) if path.is_file() else path
    train_x, train_y, test_x, test_y, classes = _load_image_folder(root, cache_dir)
    expected = CIFAR10_CLASSES if name == "cifar10" else None
    if (expected and classes != expected) or (not expected and len(classes) != 100) \
            or tuple(train_x.shape[1:]) != (3, 32, 32):
        raise DatasetError(f"{name}: {path} holds {len(classes)} classes ({', '.join(classes[:4])}, ...) of "
                           f"{tuple(train_x.shape[1:])} images, not {name}'s; use data.name image_folder for "
                           f"another dataset")
    return train_x, train_y, test_x, test_y, classes

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}


def _load_image_folder(root: Path, cache_dir=None):
    """Decoded once: the uint8 tensors go to a cache file keyed by the folder's listing (paths, sizes,
    mtimes), which every later job memory-maps; an edited, added or removed image re-decodes."""
    if not (root / "train").is_dir() or not (root / "test").is_dir():
        raise DatasetError(f"image_folder: {root} needs train/<class>/ and test/<class>/ folders")
    listing = sorted((str(f.relative_to(root)), f.stat().st_size, f.stat().st_mtime_ns)
                     for f in root.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
    key = hashlib.sha256(repr((str(root.resolve()), listing)).encode()).hexdigest()[:16]
    cache = Path(cache_dir or default_cache_dir()) / f"image_folder-{key}.pt"
    if cache.exists():
        try:
            blob = torch.load(cache, mmap=True, weights_only=True)
            return (*blob["tensors"], blob["classes"])
        except Exception:  # noqa: BLE001 - a damaged cache is decoded again
            pass
    decoded = _decode_image_folder(root)
    save_torch({"tensors": list(decoded[:4]), "classes": decoded[4]}, cache)
    return decoded


def _unpacked(archive: Path, cache_dir=None) -> Path:
    """An image folder's tarball unpacked once into the cache (keyed by its path, size and mtime; unpacked
    into a temporary folder and renamed, so an interrupted unpack is never taken for a finished one)."""
    stat = archive.stat()
    key = hashlib.sha256(repr((str(archive.resolve()), stat.st_size, stat.st_mtime_ns)).encode()).hexdigest()[:16]
    target = Path(cache_dir or default_cache_dir()) / f"image_folder-{key}"
    if not target.is_dir():
        partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
        try:
            with tarfile.open(archive) as tar:
                unsafe = [m.name for m in tar.getmembers() if m.name.startswith(("/", "..")) or "/../" in m.name
                          or not (m.isfile() or m.isdir())]
                if unsafe:
                    raise DatasetError(f"image_folder: {archive} holds {unsafe[0]!r}, outside the folder or not a "
                                       f"plain file; unpack it yourself and point data.path at the folder")
                tar.extractall(partial)
        except (tarfile.TarError, EOFError, OSError) as err:
            shutil.rmtree(partial, ignore_errors=True)
            raise DatasetError(f"image_folder: {archive} is not a readable tarball ({err}); it is truncated or "
                               f"corrupt: obtain it again, or point data.path at the unpacked folder") from None
        partial.rename(target)
    inner = [p for p in target.iterdir() if p.is_dir()]
    # the archive holds train/ and test/, or one folder that does
    return inner[0] if len(inner) == 1 and (inner[0] / "train").is_dir() else target


def _image_mode(image_module, f: Path) -> str:
    try:
        with image_module.open(f) as im:
            return im.mode
    except OSError as err:  # PIL's UnidentifiedImageError is an OSError
        raise DatasetError(f"image_folder: cannot read {f} ({type(err).__name__}); remove the file or replace "
                           f"it with a readable image") from None


def _decode_image_folder(root: Path):
    from PIL import Image

    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    test_classes = sorted(p.name for p in (root / "test").iterdir() if p.is_dir())
    if not classes or set(test_classes) - set(classes):
        raise DatasetError(f"image_folder: {root}/test has classes {test_classes} that are not "
                           f"those of {root}/train ({classes})")
    images = {}
    for split in ("train", "test"):
        files = [(f, c) for c, name in enumerate(classes) if (root / split / name).is_dir()
                 for f in sorted((root / split / name).iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise DatasetError(f"image_folder: no images under {root / split}")
        images[split] = files
    modes = {_image_mode(Image, f) for files in images.values() for f, _ in files}
    mode = "L" if modes <= {"L", "1"} else "RGB"
    out, size = [], None
    for split in ("train", "test"):
        arrays, labels = [], []
        for f, c in images[split]:
            try:
                with Image.open(f) as im:
                    a = np.asarray(im.convert(mode), dtype=np.uint8)
            except OSError as err:
                raise DatasetError(f"image_folder: cannot read {f} ({err}); remove the file or replace it "
                                   f"with a readable image") from None
            size = size or a.shape
            if a.shape != size:
                raise DatasetError(f"image_folder: {f} is {a.shape[:2]} but earlier images are "
                                   f"{size[:2]}; resize all images to one size first")
            arrays.append(a)
            labels.append(c)
        x = np.stack(arrays)
        x = x[:, None] if mode == "L" else x.transpose(0, 3, 1, 2)
        out += [torch.from_numpy(np.ascontiguousarray(x)), torch.tensor(labels, dtype=torch.int64)]
    return (*out, classes)


# --- synthetic (tests only)


def make_synthetic(n_train: int = 512, n_test: int = 256, num_classes: int = 4, channels: int = 3,
                   size: int = 16, seed: int = 0):
    """Deterministic, learnable toy images: a class prototype (a smooth pattern) plus noise."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(num_classes, channels, 4, 4, generator=g)
    prototypes = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear",
                                                 align_corners=False)

    def draw(n):
        y = torch.arange(n) % num_classes
        y = y[torch.randperm(n, generator=g)]
        x = 0.6 * prototypes[y] + 0.4 * torch.rand(n, channels, size, size, generator=g)
        return (x * 255).round().clamp(0, 255).to(torch.uint8), y

    train_x, train_y = draw(n_train)
    test_x, test_y = draw(n_test)
    return train_x, train_y, test_x, test_y, [f"class{i}" for i in range(num_classes)]


# ---------------------------------------------------------------------------- batches


def batch_indices(n: int, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None,
                  drop_last: bool = False):
    """Index tensors of consecutive batches (a permutation of range(n) when shuffled)."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]


class Normalizer:
    """uint8 batches -> normalised float batches on a device, in a chosen memory format."""

    def __init__(self, mean, std, device="cpu", memory_format=torch.contiguous_format):
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1) * 255
        self.device = device
        self.memory_format = memory_format

    def __call__(self, x_uint8: torch.Tensor) -> torch.Tensor:
        x = x_uint8.to(self.device, non_blocking=True).float()
        return ((x - self.mean) / self.std).contiguous(memory_format=self.memory_format)


def augment(x: torch.Tensor, *, pad: int, flip: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop after zero padding and random horizontal flip, per sample, on a batch tensor."""
    n, c, h, w = x.shape
    if pad > 0:
        padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
        x = padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]
    if flip:
        mirror = torch.rand(n, generator=generator) < 0.5
        x = torch.where(mirror[:, None, None, None], x.flip(3), x)
    return x
