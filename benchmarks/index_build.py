"""Building the COCO and VG500 label indices from annotation files of the real sizes,
against a straightforward reimplementation of the seed's scripts (``json.load`` of the
whole file, dict loops; for VG500 ``name in list_of_500`` per object and
``os.path.exists`` per image), and loading a cached index. Each measurement runs in a
fresh process, so its peak memory (ru_maxrss) is its own.

The synthetic files (COCO train2014: 82,783 images / ~604k annotations with polygons;
val2014: 40,504 / ~291k; Visual Genome: ~108k images / ~2.5M objects / ~76k names) and
empty image files are generated once under ``$MLCORE_CACHE/bench-data`` (about 1 GB).

    python benchmarks/index_build.py
"""
from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import time

HERE = os.path.abspath(__file__)


def data_dir() -> str:
    from mlcore.cache import cache_dir

    return os.path.join(cache_dir(), "bench-data")


# -- synthetic files ---------------------------------------------------------------------
def _write_coco(root: str, split: str, n_images: int, n_ann: int, rng: random.Random) -> None:
    folder = os.path.join(root, f"{split}2014")
    os.makedirs(folder, exist_ok=True)
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    cat_ids = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
    with open(os.path.join(root, "annotations", f"instances_{split}2014.json"), "w") as f:
        f.write('{"info": {"description": "synthetic"}, "licenses": [], "images": [')
        for i in range(n_images):
            name = f"COCO_{split}2014_{i:012d}.jpg"
            open(os.path.join(folder, name), "wb").close()
            f.write(("," if i else "") + json.dumps({
                "license": 3, "file_name": name, "coco_url": f"http://images.cocodataset.org/{split}2014/{name}",
                "height": 480, "width": 640, "date_captured": "2013-11-14 16:28:13",
                "flickr_url": "http://farm4.staticflickr.com/1/2_3.jpg", "id": i + 1}))
        f.write('], "annotations": [')
        annotated = int(n_images * 0.99)  # ~1% of the images have no annotation, as in COCO
        for k in range(n_ann):
            poly = [round(rng.uniform(0, 640), 2) for _ in range(2 * rng.randint(8, 30))]
            f.write(("," if k else "") + json.dumps({
                "segmentation": [poly], "area": round(rng.uniform(10, 90000), 4), "iscrowd": int(rng.random() < 0.01),
                "image_id": rng.randint(1, annotated), "bbox": [round(rng.uniform(0, 600), 2) for _ in range(4)],
                "category_id": rng.choice(cat_ids), "id": k + 1}))
        f.write('], "categories": ' + json.dumps([{"supercategory": "s", "id": c, "name": f"class{c}"}
                                                   for c in cat_ids]) + "}")


def _write_vg(root: str, n_images: int, n_objects: int, n_names: int, rng: random.Random) -> None:
    for d in ("VG_100K", "VG_100K_2"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    weights = [1.0 / (r + 1) ** 1.1 for r in range(n_names)]  # Zipf-like name frequencies
    names = [f"name{r}" for r in range(n_names)]
    per = n_objects // n_images
    with open(os.path.join(root, "objects.json"), "w") as f:
        f.write("[")
        for i in range(n_images):
            image_id = i + 1
            open(os.path.join(root, "VG_100K" if i % 5 else "VG_100K_2", f"{image_id}.jpg"), "wb").close()
            objs = [{"synsets": ["x.n.01"], "h": rng.randint(5, 300), "object_id": i * 100 + k,
                     "merged_object_ids": [], "names": [n], "w": rng.randint(5, 300), "y": rng.randint(0, 400),
                     "x": rng.randint(0, 400)} for k, n in enumerate(rng.choices(names, weights, k=per))]
            f.write(("," if i else "") + json.dumps({"image_id": image_id, "objects": objs,
                                                      "image_url": f"https://cs.stanford.edu/{image_id}.jpg"}))
        f.write("]")


def ensure_data() -> str:
    root = data_dir()
    done = os.path.join(root, ".complete")
    if not os.path.exists(done):
        t0 = time.perf_counter()
        rng = random.Random(0)
        print("generating the synthetic annotation files once (a few minutes)…", flush=True)
        _write_coco(os.path.join(root, "coco"), "train", 82783, 604000, rng)
        _write_coco(os.path.join(root, "coco"), "val", 40504, 291000, rng)
        _write_vg(os.path.join(root, "vg"), 108077, 2516000, 76000, rng)
        open(done, "w").close()
        print(f"  done in {time.perf_counter() - t0:.0f} s", flush=True)
    return root


# -- what each child process measures ---------------------------------------------------
def seed_coco(root: str) -> None:
    from collections import defaultdict

    for split in ("train", "val"):
        data = json.load(open(os.path.join(root, "annotations", f"instances_{split}2014.json")))
        cat = {c["id"]: c["name"] for c in data["categories"]}
        img = {i["id"]: i["file_name"] for i in data["images"]}
        labels = defaultdict(list)
        for a in data["annotations"]:
            name = cat[a["category_id"]]
            if name not in labels[img[a["image_id"]]]:
                labels[img[a["image_id"]]].append(name)
        lines = [f"{k}\t{','.join(v)}\n" for k, v in labels.items()]
        del data, lines


def seed_vg(root: str) -> None:
    from collections import Counter

    data = json.load(open(os.path.join(root, "objects.json")))
    counter = Counter(o["names"][0] for line in data for o in line["objects"])
    tags500 = [k for k, _ in counter.most_common()[:500]]
    kept = []
    for line in data:
        objs = []
        for o in line["objects"]:
            if o["names"][0] in tags500 and o["names"][0] not in objs:
                objs.append(o["names"][0])
        if objs:
            kept.append((line["image_id"], objs))
    for image_id, objs in kept:
        p = os.path.join(root, "VG_100K", f"{image_id}.jpg")
        if not os.path.exists(p):
            p = os.path.join(root, "VG_100K_2", f"{image_id}.jpg")
            if not os.path.exists(p):
                raise FileNotFoundError(p)
    random.seed(202)
    random.shuffle(kept)


def ours_coco(root: str) -> None:
    from mlcore_builtins.coco.reader import build_split

    for split in ("train", "val"):
        build_split(root, split, 2014, False)


def ours_vg(root: str) -> None:
    from mlcore_builtins.vg500.reader import build_index

    build_index(root, 500, 202, 0.8, None, None)


def cached(kind: str, root: str) -> None:
    from mlcore.data import index

    path = os.path.join(data_dir(), f"{kind}-index.npz")
    if not os.path.exists(path):
        if kind == "coco":
            from mlcore_builtins.coco.reader import build_split

            idx = build_split(root, "train", 2014, False)
        else:
            from mlcore_builtins.vg500.reader import build_index

            idx = build_index(root, 500, 202, 0.8, None, None)
        index.save(idx, path)
        return
    index.load(path)


def child(what: str) -> None:
    root = data_dir()
    coco, vg = os.path.join(root, "coco"), os.path.join(root, "vg")
    if what.startswith("cached-"):
        cached(what[7:], coco if what.endswith("coco") else vg)  # first call writes it: imports warmed
    t0 = time.perf_counter()
    {"seed-coco": lambda: seed_coco(coco), "mlcore-coco": lambda: ours_coco(coco),
     "seed-vg": lambda: seed_vg(vg), "mlcore-vg": lambda: ours_vg(vg),
     "cached-coco": lambda: cached("coco", coco), "cached-vg": lambda: cached("vg", vg)}[what]()
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def measure(what: str) -> dict:
    out = subprocess.run([sys.executable, HERE, "--child", what], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ensure_data()
    for name, label in (("coco", "COCO train2014+val2014"), ("vg", "VG500 from objects.json")):
        seed, ours, load = measure(f"seed-{name}"), measure(f"mlcore-{name}"), measure(f"cached-{name}")
        print(f"{label}: seed-style {seed['seconds']:6.1f} s, peak {seed['peak_mb']:6.0f} MB | "
              f"mlcore {ours['seconds']:5.1f} s, peak {ours['peak_mb']:5.0f} MB | "
              f"speed-up {seed['seconds'] / ours['seconds']:4.1f}×, memory {ours['peak_mb'] / seed['peak_mb']:.2f}× | "
              f"cached index loads in {load['seconds'] * 1000:.0f} ms "
              f"({ours['seconds'] / load['seconds']:.0f}× faster than building)", flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        main()
