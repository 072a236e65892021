"""Test clips made with ffmpeg from real footage: the scenes the capacity work is measured on.

Nothing is shipped: each clip is built from ``../shared/media`` (or any clips given) when a test or a benchmark
needs it, in a second or two, so the repository holds the recipe and not the video.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

ENCODE = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", "-an"]


def _ffmpeg(args: Sequence[str], out: Path) -> Path:
    if shutil.which("ffmpeg") is None:
        raise FileNotFoundError("ffmpeg is not installed (scripts/install-system-deps.sh installs it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["ffmpeg", "-v", "error", "-y", *args, *ENCODE, str(out)], capture_output=True, text=True)
    if done.returncode != 0:
        raise ValueError(f"ffmpeg could not make {out.name}: {done.stderr.strip().splitlines()[-1:]}")
    return out


def static_scene(background: Path, person: Path, out: Path, still_s: float = 10.0, walk_s: float = 2.0,
                 size: tuple[int, int] = (596, 336), fps: int = 30) -> Path:
    """A still, empty scene for ``still_s`` seconds, then a person walks in from the right and stays.

    The person is the clip ``person`` at half size, sliding over ``walk_s`` seconds to the middle of the
    ``background`` photo (which must have no face). Its length is ``still_s`` plus the person clip's.
    """
    w, h = size
    pw, ph = w // 2 // 2 * 2, h // 2 // 2 * 2
    x_end = (w - pw) // 2
    slide = f"if(lt(t,{still_s}),{w},max({x_end},{w}-({w}-{x_end})*(t-{still_s})/{walk_s}))"
    graph = (
        f"[0:v]scale={w}:{h},setsar=1,fps={fps}[bg];"
        f"[1:v]scale={pw}:{ph},setsar=1,fps={fps},setpts=PTS-STARTPTS+{still_s}/TB[p];"
        f"[bg][p]overlay=x='{slide}':y={(h - ph) // 2}:eof_action=endall"
    )
    return _ffmpeg(["-loop", "1", "-framerate", str(fps), "-i", str(background), "-i", str(person),
                    "-filter_complex", graph], out)


def still_person(person: Path, out: Path, move_s: float = 2.0, hold_s: float = 30.0) -> Path:
    """A person who moves for ``move_s`` seconds, then stands perfectly still (a frozen frame) for ``hold_s``."""
    return _ffmpeg(["-i", str(person), "-filter_complex",
                    f"[0:v]trim=duration={move_s},setpts=PTS-STARTPTS,tpad=stop_mode=clone:stop_duration={hold_s}"],
                   out)


def mosaic(clips: Sequence[Path], out: Path, grid: tuple[int, int] = (3, 3), size: tuple[int, int] = (1920, 1080),
           seconds: float = 6.0, fps: int = 30) -> Path:
    """A ``cols x rows`` grid of the clips (cycled, every other one mirrored) at ``size``: many faces in one frame.

    Each tile loops its clip, so the mosaic lasts ``seconds`` whatever the clips' lengths.
    """
    if not clips:
        raise ValueError("mosaic needs at least one clip")
    cols, rows = grid
    w, h = size
    tw, th = w // cols // 2 * 2, h // rows // 2 * 2
    n = cols * rows
    inputs: list[str] = []
    for i in range(n):
        inputs += ["-stream_loop", "-1", "-i", str(clips[i % len(clips)])]
    tiles = []
    for i in range(n):
        flip = ",hflip" if (i // len(clips)) % 2 else ""
        tiles.append(f"[{i}:v]scale={tw}:{th},setsar=1,fps={fps}{flip},trim=duration={seconds},"
                     f"setpts=PTS-STARTPTS[t{i}]")
    layout = "|".join(f"{(i % cols) * tw}_{(i // cols) * th}" for i in range(n))
    graph = ";".join(tiles) + ";" + "".join(f"[t{i}]" for i in range(n))
    graph += f"xstack=inputs={n}:layout={layout}:fill=black,scale={w}:{h},setsar=1"
    return _ffmpeg([*inputs, "-filter_complex", graph, "-t", str(seconds)], out)


# Two real faces with different held expressions, as square crops (x, y, side) of the shared photos: the man on
# the right of two_people.jpg (the shipped model: neutral 85%) and justin.jpg (happy 85%).
NEUTRAL_FACE = ("two_people.jpg", (715, 0, 300))
HAPPY_FACE = ("justin.jpg", (35, 35, 300))


def expression_change(media: Path, out: Path, hold_s: float = 6.0, fps: int = 30, size: tuple[int, int] = (596, 336),
                      noise: int = 6) -> Path:
    """A face at one place that holds one expression (neutral) for ``hold_s``, then another (happy) for ``hold_s``.

    Two real faces cut in at the same place and size, so the tracker keeps one track across the cut and the
    delay from the cut to the shown label changing is the smoothing's. Temporal noise (``noise``) makes every
    frame's pixels differ, as a camera's do, so the classifier's per-frame answers jitter as on real video.
    """
    w, h = size
    side = h - h % 2
    parts = []
    inputs: list[str] = []
    for i, (name, (x, y, crop)) in enumerate((NEUTRAL_FACE, HAPPY_FACE)):
        inputs += ["-loop", "1", "-framerate", str(fps), "-t", str(hold_s), "-i", str(media / name)]
        parts.append(f"[{i}:v]crop={crop}:{crop}:{x}:{y},scale={side}:{side},setsar=1,"
                     f"pad={w}:{h}:({w}-{side})/2:0:gray,format=yuv420p[p{i}]")
    graph = ";".join(parts) + f";[p0][p1]concat=n=2:v=1:a=0,noise=alls={noise}:allf=t"
    return _ffmpeg([*inputs, "-filter_complex", graph], out)


def standard_clips(media: Path, out_dir: Path) -> dict[str, Path]:
    """The capacity work's clips from ``../shared/media``: static scene, still person, 1080p mosaic, expression change
    at 6 s (each made once)."""
    recipes = {
        "static_scene": lambda p: static_scene(media / "no-faces.jpg", media / "woman2.mp4", p),
        "still_person": lambda p: still_person(media / "woman2.mp4", p),
        "mosaic_1080p": lambda p: mosaic([media / "woman2.mp4", media / "fer_test.mp4"], p),
        "expression_change": lambda p: expression_change(media, p),
    }
    made = {}
    for name, make in recipes.items():
        path = out_dir / f"{name}.mp4"
        if not path.exists():
            make(path)
        made[name] = path
    return made


def single_1080p(person: Path, out: Path, size: tuple[int, int] = (1920, 1080), fps: int = 25) -> Path:
    """The clip ``person`` scaled to fit ``size`` (kept in proportion) and padded: one 1080p camera, one face."""
    w, h = size
    graph = (f"[0:v]scale={w}:{h}:force_original_aspect_ratio=decrease,pad={w}:{h}:(ow-iw)/2:(oh-ih)/2,"
             f"setsar=1,fps={fps}")
    return _ffmpeg(["-i", str(person), "-filter_complex", graph], out)


def empty_1080p(background: Path, out: Path, seconds: float = 20.0, size: tuple[int, int] = (1920, 1080),
                fps: int = 25) -> Path:
    """The ``background`` photo (no face) held still for ``seconds``: a 1080p camera with nobody in view."""
    w, h = size
    return _ffmpeg(["-loop", "1", "-framerate", str(fps), "-t", str(seconds), "-i", str(background),
                    "-vf", f"scale={w}:{h},setsar=1"], out)
