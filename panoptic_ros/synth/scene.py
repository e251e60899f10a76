"""Rendering of one synthetic street scene.

A pinhole camera 1.5 m above a flat ground looks down a street. Everything is placed in metres
(x right, y up, z forward) and projected, so sizes follow perspective: a car 40 m away is a
tenth of one 4 m away. Objects are painted far to near, which gives occlusion; each shape is
drawn at once into the RGB image, the Cityscapes ``labelIds`` image and the ``instanceIds``
image (``labelId * 1000 + k`` for object instances, ``labelId`` for stuff and crowd groups).

Scenes vary in layout (street width, sidewalks, building heights, trees, poles, signs, fences),
traffic (parked rows of near-identical cars, moving cars, trucks, buses, trams, riders on
bicycles and motorcycles, pedestrians and crowd groups) and appearance (colours, textures,
lighting, shadows, blur, noise).

A scene is a world (:meth:`SceneRenderer.world`: the camera, the street and a list of
:class:`Drawable`) painted at a time ``t``. :meth:`SceneRenderer.render` paints one world at
``t = 0``; :meth:`SceneRenderer.render_sequence` paints it at consecutive frame times while the
camera drives down the street and traffic moves (right-hand traffic: vehicles right of the
camera drive away from it, those on the left come towards it; two-wheelers likewise; people
walk along the sidewalks or cross the road; parked cars, crowd groups and everything else stay
put), with a few vehicles that overtake the camera and enter the view from behind. Objects
enter, leave and occlude each other as they move, and every object keeps its ``instanceIds``
value for the whole sequence.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np

# Cityscapes labelIds used by the generator (cityscapesscripts.helpers.labels).
EGO, ROAD, SIDEWALK, BUILDING, WALL, FENCE = 1, 7, 8, 11, 12, 13
POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY = 17, 19, 20, 21, 22, 23
PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE = 24, 25, 26, 27, 28, 31, 32, 33

# Texture strength per labelId (noise amplitude, 0-255 scale).
_TEXTURE = np.full(256, 6, np.float32)
_TEXTURE[[ROAD, SIDEWALK]] = 12
_TEXTURE[[VEGETATION, TERRAIN]] = 34
_TEXTURE[[BUILDING, WALL]] = 14
_TEXTURE[SKY] = 2

_NOISE_TILE_SIZE = 1024


def _noise_tile() -> np.ndarray:
    """A fixed ``[1024, 1024] float32`` texture in about [-1, 1]: fine grain plus blotches."""
    rng = np.random.default_rng(12345)
    fine = rng.standard_normal((_NOISE_TILE_SIZE, _NOISE_TILE_SIZE)).astype(np.float32)
    coarse = cv2.resize(rng.standard_normal((64, 64)).astype(np.float32),
                        (_NOISE_TILE_SIZE, _NOISE_TILE_SIZE), interpolation=cv2.INTER_CUBIC)
    return 0.6 * fine + 0.6 * coarse


_TILE: np.ndarray | None = None


@dataclass
class Canvas:
    """The three images a scene is drawn into, ``[H, W(, 3)]``."""

    image: np.ndarray      # [H, W, 3] uint8 RGB
    label: np.ndarray      # [H, W] uint8 Cityscapes labelIds
    instance: np.ndarray   # [H, W] int32 Cityscapes instanceIds
    counters: dict = field(default_factory=dict)
    # (drawable, labelId) -> instanceIds value, kept across the frames of a sequence
    known: dict = field(default_factory=dict)
    owner: int = -1        # the drawable being painted

    def new_instance(self, label_id: int) -> int:
        """The instanceIds value of the current drawable's ``label_id`` part: the same as in
        earlier frames of its sequence, else the class's next ``labelId * 1000 + k``."""
        key = (self.owner, label_id)
        if key not in self.known:
            k = self.counters.get(label_id, 0)
            self.counters[label_id] = k + 1
            self.known[key] = label_id * 1000 + k
        return self.known[key]

    def poly(self, pts, color, label_id: int, inst: int | None = None) -> None:
        """Fill polygon(s) ``pts`` (list of ``[N, 2]`` float arrays, pixels)."""
        p = [np.round(np.asarray(q) * 16).astype(np.int32) for q in pts]
        cv2.fillPoly(self.image, p, _c(color), cv2.LINE_8, 4)
        cv2.fillPoly(self.label, p, int(label_id), cv2.LINE_8, 4)
        cv2.fillPoly(self.instance, p, int(label_id if inst is None else inst), cv2.LINE_8, 4)

    def ellipse(self, center, axes, color, label_id: int, inst: int | None = None) -> None:
        c = (int(round(center[0] * 16)), int(round(center[1] * 16)))
        a = (max(1, int(round(axes[0] * 16))), max(1, int(round(axes[1] * 16))))
        cv2.ellipse(self.image, c, a, 0, 0, 360, _c(color), -1, cv2.LINE_8, 4)
        cv2.ellipse(self.label, c, a, 0, 0, 360, int(label_id), -1, cv2.LINE_8, 4)
        cv2.ellipse(self.instance, c, a, 0, 0, 360, int(label_id if inst is None else inst), -1,
                    cv2.LINE_8, 4)

    def ring(self, center, radius, thickness, color, label_id: int, inst: int) -> None:
        c = (int(round(center[0])), int(round(center[1])))
        r, t = max(1, int(round(radius))), max(1, int(round(thickness)))
        cv2.circle(self.image, c, r, _c(color), t)
        cv2.circle(self.label, c, r, int(label_id), t)
        cv2.circle(self.instance, c, r, int(inst), t)

    def line(self, p0, p1, thickness, color, label_id: int, inst: int) -> None:
        a = (int(round(p0[0])), int(round(p0[1])))
        b = (int(round(p1[0])), int(round(p1[1])))
        t = max(1, int(round(thickness)))
        cv2.line(self.image, a, b, _c(color), t)
        cv2.line(self.label, a, b, int(label_id), t)
        cv2.line(self.instance, a, b, int(inst), t)

    def paint(self, pts, color) -> None:
        """Image-only detail (windows, markings): labels unchanged."""
        p = [np.round(np.asarray(q) * 16).astype(np.int32) for q in pts]
        cv2.fillPoly(self.image, p, _c(color), cv2.LINE_8, 4)


def _c(color) -> tuple[int, int, int]:
    r, g, b = (float(v) for v in color)
    return (int(min(255.0, max(0.0, r))), int(min(255.0, max(0.0, g))),
            int(min(255.0, max(0.0, b))))


@dataclass(frozen=True)
class Camera:
    """Pinhole camera at height ``h`` and at ``(x0, z0)`` on the ground, looking along +z;
    image rows grow downwards.

    Depths are clamped to 0.3 m: for the faces the scene is made of (ground quads, facades
    and sides along z) that is clipping at a near plane; frontal faces behind it are not
    drawn (:attr:`Drawable.frontal`)."""

    f: float
    cx: float
    horizon: float
    h: float = 1.5
    x0: float = 0.0
    z0: float = 0.0

    def project(self, x, y, z):
        """Points in metres (arrays of equal shape) to pixel ``[N, 2]``."""
        z = np.maximum(np.asarray(z, np.float64) - self.z0, 0.3)
        u = self.cx + self.f * (np.asarray(x) - self.x0) / z
        v = self.horizon + self.f * (self.h - np.asarray(y)) / z
        return np.stack([u, v], axis=-1)

    def scale(self, z: float) -> float:
        """Pixels per metre at depth ``z``."""
        return self.f / max(z - self.z0, 0.3)


Draw = Callable[['Canvas', Camera, np.random.Generator], None]


@dataclass
class Drawable:
    """Something painted into a scene, far to near.

    Attributes:
        depth: z (m) that orders painting; for frontal objects their nearest face.
        draw: ``draw(canvas, camera, rng)``; ``rng`` serves colours picked at paint time.
        motion: how it moves in a sequence: ``static``, ``vehicle`` (along z, away from the
            camera right of it, towards it on the left), ``two_wheeler`` (the same, slower),
            ``walker`` (along z) or ``crosser`` (along x).
        x: its lateral position (m), for the direction of traffic.
        frontal: it faces the camera (not drawn once its ``depth`` is less than 1 m ahead).
    """

    depth: float
    draw: Draw
    motion: str = 'static'
    x: float = 0.0
    frontal: bool = False


@dataclass(frozen=True)
class World:
    """What :meth:`SceneRenderer.world` draws from a generator: painted per frame."""

    cam: Camera
    street: dict                      # road and sidewalk half-widths, street length (m)
    background: tuple[Draw, ...]      # sky and ground, painted first in this order
    drawables: tuple[Drawable, ...]   # sorted far to near at t = 0


@dataclass(frozen=True)
class Motion:
    """Velocities (m/s) of one sequence: the camera's, and ``(vx, vz)`` per drawable."""

    ego: float
    velocity: tuple[tuple[float, float], ...]


def _jitter(rng, color, amount=18):
    return np.clip(np.asarray(color, np.float64) + rng.normal(0, amount, 3), 0, 255)


def _grey(rng, color, amount=15):
    """Brightness jitter only: asphalt and concrete stay grey."""
    return np.clip(np.asarray(color, np.float64) + rng.normal(0, amount), 0, 255)


def _quad(cam, x0, x1, y0, y1, z):
    """Frontal rectangle (x0..x1, y0..y1) at depth z."""
    return cam.project([x0, x1, x1, x0], [y0, y0, y1, y1], [z, z, z, z])


def _side(cam, x, y0, y1, z0, z1):
    """Rectangle in the plane x = const, from depth z0 to z1."""
    return cam.project([x, x, x, x], [y0, y1, y1, y0], [z0, z0, z1, z1])


class SceneRenderer:
    """Renders scenes of one size: one still image (:meth:`render`) or a sequence
    (:meth:`render_sequence`)."""

    def __init__(self, height: int, width: int) -> None:
        global _TILE
        if _TILE is None:
            _TILE = _noise_tile()
        self.h, self.w = height, width

    def render(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One scene.

        Returns:
            ``image [H, W, 3] uint8`` RGB, ``label [H, W] uint8`` labelIds, ``instance
            [H, W] int32`` instanceIds.
        """
        world = self.world(rng)
        cv = self._canvas()
        self._paint(cv, world, 0.0, None, lambda k: rng)
        if rng.random() < 0.35:
            self._ego_vehicle(rng, cv)
        self._finish(rng, cv)
        return cv.image, cv.label, cv.instance

    def render_sequence(self, seed: Sequence[int], length: int, frame_rate: float = 10.0
                        ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``length`` frames ``1 / frame_rate`` seconds apart, as :meth:`render` returns them.

        The world is the one ``render(default_rng(seed))`` draws; motion, the overtaking
        vehicles and per-object paint-time colours come from ``default_rng(seed + [1])`` and
        ``default_rng(seed + [2, k])``, the camera's look (exposure, noise, ego hood) from
        ``default_rng(seed + [3])`` and stays the same in every frame. An object has the same
        ``instanceIds`` value in every frame it is visible in.
        """
        seed = [int(v) for v in seed]
        world = self.world(np.random.default_rng(seed))
        world, motion = self._motion(world, np.random.default_rng(seed + [1]))
        known: dict = {}
        counters: dict = {}
        for frame in range(length):
            cv = self._canvas(known, counters)
            self._paint(cv, world, frame / frame_rate, motion,
                        lambda k: np.random.default_rng(seed + [2, k]))
            look = np.random.default_rng(seed + [3])
            if look.random() < 0.35:
                self._ego_vehicle(look, cv)
            self._finish(look, cv)
            yield cv.image, cv.label, cv.instance

    def world(self, rng: np.random.Generator) -> World:
        """Camera, street, background and drawables of one scene."""
        h, w = self.h, self.w
        cam = Camera(f=w * rng.uniform(0.5, 0.75), cx=w * rng.uniform(0.42, 0.58),
                     horizon=h * rng.uniform(0.36, 0.5))
        street = dict(road=rng.uniform(3.5, 8.0), walk=rng.uniform(2.0, 5.0),
                      far=rng.uniform(60, 160))
        background = (self._sky(rng), self._ground(rng, street))
        drawables: list[Drawable] = []
        for side in (-1, 1):
            drawables += self._buildings(rng, street, side)
            drawables += self._roadside(rng, street, side)
        drawables += self._traffic(rng, street)
        drawables += self._pedestrians(rng, street)
        drawables.sort(key=lambda d: -d.depth)
        return World(cam, street, background, tuple(drawables))

    def _canvas(self, known: dict | None = None, counters: dict | None = None) -> Canvas:
        h, w = self.h, self.w
        return Canvas(np.zeros((h, w, 3), np.uint8), np.zeros((h, w), np.uint8),
                      np.zeros((h, w), np.int32), {} if counters is None else counters,
                      {} if known is None else known)

    def _motion(self, world: World, rng: np.random.Generator) -> tuple[World, Motion]:
        """The sequence's velocities, and 0-2 vehicles that start behind the camera in its
        lane and overtake it."""
        ego = 0.0 if rng.random() < 0.15 else rng.uniform(4.0, 12.0)   # 15%: waiting
        road = world.street['road']
        extra = []
        for _ in range(rng.integers(0, 3)):
            lane = road * rng.uniform(0.2, 0.6)
            z = -rng.uniform(6.0, 25.0)
            extra.append(Drawable(z, self._vehicle(rng, lane, z, CAR), 'overtaker', lane, True))
        velocity = []
        for d in (*world.drawables, *extra):
            way = 1.0 if d.x > 0 else -1.0                 # right of the camera: away from it
            if d.motion == 'vehicle':
                v = (0.0, 0.0 if rng.random() < 0.1 else way * rng.uniform(3.0, 14.0))
            elif d.motion == 'two_wheeler':
                v = (0.0, way * rng.uniform(2.0, 7.0))
            elif d.motion == 'walker':
                v = (0.0, rng.choice([-1.0, 1.0]) * rng.uniform(0.7, 1.7))
            elif d.motion == 'crosser':
                v = (rng.choice([-1.0, 1.0]) * rng.uniform(0.8, 1.6), 0.0)
            elif d.motion == 'overtaker':
                v = (0.0, ego + rng.uniform(3.0, 9.0))
            else:
                v = (0.0, 0.0)
            velocity.append((float(v[0]), float(v[1])))
        return (replace(world, drawables=world.drawables + tuple(extra)),
                Motion(float(ego), tuple(velocity)))

    def _paint(self, cv: Canvas, world: World, t: float, motion: Motion | None,
               rng_of: Callable[[int], np.random.Generator]) -> None:
        """Background, then the drawables far to near at time ``t`` (``motion`` None: the
        world as built)."""
        cam = world.cam if motion is None else replace(world.cam, z0=motion.ego * t)
        for draw in world.background:
            draw(cv, cam, None)
        velocity = motion.velocity if motion is not None else ((0.0, 0.0),) * len(
            world.drawables)
        order = sorted(range(len(world.drawables)),
                       key=lambda k: -(world.drawables[k].depth + velocity[k][1] * t))
        for k in order:
            d = world.drawables[k]
            vx, vz = velocity[k]
            if d.frontal and d.depth + vz * t - cam.z0 < 1.0:
                continue        # passed, or not yet overtaking
            cv.owner = k
            # a moving object is drawn where it stands at t: the camera shifted the other way
            view = cam if not (vx or vz) else replace(cam, x0=cam.x0 - vx * t,
                                                      z0=cam.z0 - vz * t)
            d.draw(cv, view, rng_of(k))

    # -- stuff -------------------------------------------------------------------------------
    def _sky(self, rng) -> Draw:
        top = _jitter(rng, (70, 120, 190), 25)
        bottom = _jitter(rng, (185, 205, 225), 20)

        def draw(cv, cam, _rng):
            rows = int(min(self.h, cam.horizon + 5))
            t = np.linspace(0, 1, rows)[:, None]
            cv.image[:rows] = (top * (1 - t) + bottom * t)[:, None, :].astype(np.uint8)
            cv.label[:] = SKY
            cv.instance[:] = SKY
        return draw

    def _ground(self, rng, st) -> Draw:
        road, walk, far = st['road'], st['walk'], st['far']
        terrain = _jitter(rng, (150, 160, 110), 20)
        asphalt = _grey(rng, (95, 94, 97), 15)
        walks = []
        for side in (-1, 1):
            pavement = _grey(rng, (165, 155, 155), 20)
            grass = _jitter(rng, (120, 150, 80), 20) if rng.random() < 0.3 else None
            walks.append((side, pavement, grass))   # grass: a strip between road and sidewalk
        dash_z = []
        z = 2.0 + rng.uniform(0, 3)
        while z < far:
            dash_z.append(z)
            z += 9
        marking = _jitter(rng, (225, 225, 215), 10) if rng.random() < 0.8 else None
        shadows = []        # across the street
        for _ in range(rng.integers(0, 3)):
            z0 = rng.uniform(3, far / 2)
            z1 = z0 + rng.uniform(3, 20)
            s = -1 if rng.random() < 0.5 else 1
            shadows.append((z0, z1, s, rng.uniform(0, road)))

        def draw(cv, cam, _rng):
            # ground beyond the street: terrain up to the horizon
            cv.poly([cam.project([-400, 400, 400, -400], [0, 0, 0, 0],
                                 [0.5, 0.5, 2000, 2000])], terrain, TERRAIN)
            cv.poly([cam.project([-road, road, road, -road], [0] * 4, [0.5, 0.5, far, far])],
                    asphalt, ROAD)
            for side, pavement, grass in walks:
                x0, x1 = side * road, side * (road + walk)
                cv.poly([cam.project([x0, x1, x1, x0], [0.12] * 4, [0.5, 0.5, far, far])],
                        pavement, SIDEWALK)
                if grass is not None:
                    xs = side * (road + 0.2), side * (road + 0.2 + walk * 0.3)
                    cv.poly([cam.project([xs[0], xs[1], xs[1], xs[0]], [0.12] * 4,
                                         [0.5, 0.5, far, far])], grass, TERRAIN)
            if marking is not None:     # lane markings (image only)
                cv.paint([cam.project([-0.07, 0.07, 0.07, -0.07], [0] * 4, [z, z, z + 3, z + 3])
                          for z in dash_z], marking)
            for z0, z1, s, xr in shadows:   # image only, darker asphalt
                cv.paint([cam.project([s * (road + walk), -s * xr, -s * road * 0.5,
                                       s * (road + walk)], [0.13] * 4, [z0, z0, z1, z1])],
                         asphalt * 0.55)
        return draw

    def _buildings(self, rng, st, side) -> list[Drawable]:
        out = []
        x = side * (st['road'] + st['walk'])
        z = 0.5
        while z < st['far']:
            depth = rng.uniform(8, 30)
            out.append(Drawable(z + depth, self._facade(rng, x + side * rng.uniform(0, 1.5), z,
                                                        z + depth, rng.uniform(6, 32))))
            z += depth + (rng.uniform(3, 15) if rng.random() < 0.15 else 0)
        # the end of the street: a frontal block or an open view
        if rng.random() < 0.6:
            zf = st['far']
            height = rng.uniform(10, 40)
            color = _jitter(rng, (140, 130, 120), 35)
            x0, x1 = -st['road'] - st['walk'] - 30, st['road'] + st['walk'] + 30

            def far_block(cv, cam, _rng, color=color):
                cv.poly([_quad(cam, x0, x1, 0, height, zf)], color, BUILDING)
            out.append(Drawable(zf + 1, far_block, frontal=True))
        return out

    def _facade(self, rng, x, z0, z1, height) -> Draw:
        color = _jitter(rng, rng.choice([(150, 140, 130), (190, 170, 140), (120, 110, 105),
                                         (200, 200, 195), (160, 100, 80)]), 20)
        win = color * rng.uniform(0.35, 0.6)
        floor_h, bay = rng.uniform(2.8, 3.6), rng.uniform(2.5, 4.0)

        ys = np.arange(1.0, height - 1.5, floor_h)
        zs = np.arange(z0 + 0.8, z1 - 1.2, bay)
        yy, zz = (a.ravel() for a in np.meshgrid(ys, zs))

        def draw(cv, cam, _rng):
            cv.poly([_side(cam, x, 0, height, z0, z1)], color, BUILDING)
            if len(yy):     # all windows of the facade in one projection: [N, 4] corners
                wins = cam.project(np.full((len(yy), 4), x),
                                   np.stack([yy, yy + floor_h * 0.55, yy + floor_h * 0.55,
                                             yy], 1),
                                   np.stack([zz, zz, zz + bay * 0.5, zz + bay * 0.5], 1))
                cv.paint(list(wins), win)
        return draw

    def _roadside(self, rng, st, side) -> list[Drawable]:
        out = []
        road, walk, far = st['road'], st['walk'], st['far']
        edge = side * (road + 0.4)
        for _ in range(rng.integers(1, 6)):  # trees
            z = rng.uniform(4, far * 0.7)
            out.append(Drawable(z, self._tree(rng, side * (road + walk * rng.uniform(0.3, 0.8)),
                                              z), frontal=True))
        z = rng.uniform(3, 15)
        while z < far * 0.6:  # poles with signs or traffic lights
            out.append(Drawable(z, self._pole(rng, edge, z), frontal=True))
            z += rng.uniform(10, 35)
        if rng.random() < 0.5:  # fence or wall along the back of the sidewalk
            z0 = rng.uniform(2, 30)
            z1 = z0 + rng.uniform(5, 30)
            label = FENCE if rng.random() < 0.6 else WALL
            x = side * (road + walk - 0.2)
            hgt = rng.uniform(0.8, 2.2)
            color = _jitter(rng, (150, 140, 130) if label == WALL else (110, 100, 90), 20)

            def barrier(cv, cam, _rng, x=x, z0=z0, z1=z1, hgt=hgt, color=color, label=label):
                cv.poly([_side(cam, x, 0, hgt, z0, z1)], color, label)
                if label == FENCE:  # slats, image only
                    slats = [_side(cam, x, 0, hgt, z, z + 0.08) for z in np.arange(z0, z1, 0.5)]
                    cv.paint(slats, color * 0.6)
            out.append(Drawable(z0, barrier))
        return out

    def _tree(self, rng, x, z) -> Draw:
        trunk_h = rng.uniform(2, 4)
        crown = rng.uniform(1.5, 3.5)
        green = _jitter(rng, (70, 110, 40), 20)
        blobs = [(rng.normal(0, crown * 0.5), trunk_h + crown + rng.normal(0, crown * 0.4),
                  crown * rng.uniform(0.5, 1.0)) for _ in range(rng.integers(3, 7))]
        shades = [green * rng.uniform(0.7, 1.2) for _ in blobs]

        def draw(cv, cam, _rng):
            cv.poly([_quad(cam, x - 0.15, x + 0.15, 0, trunk_h + crown * 0.5, z)],
                    (80, 65, 50), VEGETATION)
            for (dx, y, r), shade in zip(blobs, shades):
                c = cam.project(x + dx, y, z)
                s = cam.scale(z) * r
                cv.ellipse(c, (s, s * 0.85), shade, VEGETATION)
        return draw

    def _pole(self, rng, x, z) -> Draw:
        height = rng.uniform(3.5, 7)
        kind = rng.choice(['sign', 'light', 'none'], p=[0.45, 0.35, 0.2])
        sign_color = rng.choice([(200, 30, 30), (30, 60, 170), (230, 200, 40), (240, 240, 240)])

        def draw(cv, cam, rng):
            cv.poly([_quad(cam, x - 0.08, x + 0.08, 0, height, z)], (120, 120, 125), POLE)
            if kind == 'sign':
                c = cam.project(x, height - 0.4, z)
                r = cam.scale(z) * 0.35
                cv.ellipse(c, (r, r), sign_color, SIGN)
            elif kind == 'light':
                cv.poly([_quad(cam, x - 0.2, x + 0.2, height - 1.0, height, z)], (40, 40, 40),
                        LIGHT)
                lit = rng.integers(3)
                for k in range(3):
                    c = cam.project(x, height - 0.2 - 0.3 * k, z)
                    r = cam.scale(z) * 0.1
                    col = ((230, 40, 30), (240, 190, 30), (40, 220, 90))[k] if k == lit \
                        else (70, 70, 70)
                    cv.ellipse(c, (r, r), col, LIGHT)
        return draw

    # -- things ------------------------------------------------------------------------------
    def _traffic(self, rng, st) -> list[Drawable]:
        out = []
        road = st['road']
        # parked rows: touching, near-identical cars (same model and colour)
        for side in (-1, 1):
            if rng.random() < 0.6:
                color = _jitter(rng, rng.choice([(30, 30, 35), (200, 200, 205), (150, 20, 25),
                                                 (30, 60, 130), (120, 125, 130)]), 8)
                z = rng.uniform(3, 15)
                for _ in range(rng.integers(2, 6)):
                    length = rng.uniform(4.0, 4.6)
                    x = side * (road - 1.1)
                    out.append(Drawable(z, self._vehicle(rng, x, z, CAR,
                                                         color=_jitter(rng, color, 3),
                                                         length=length), x=x, frontal=True))
                    z += length + rng.uniform(0.0, 0.6)
        n_moving = rng.integers(1, 7)
        for _ in range(n_moving):
            kind = rng.choice([CAR, CAR, CAR, TRUCK, BUS, TRAIN, 'bike', 'moto'],
                              p=[0.25, 0.2, 0.15, 0.1, 0.1, 0.04, 0.08, 0.08])
            lane = rng.choice([-1, 1]) * road * rng.uniform(0.2, 0.6)
            z = rng.uniform(5, st['far'] * 0.8)
            if kind in ('bike', 'moto'):
                x = side_x(lane, road)
                out.append(Drawable(z, self._two_wheeler(rng, x, z, BICYCLE if kind == 'bike'
                                                         else MOTORCYCLE),
                                    'two_wheeler', x, True))
            else:
                out.append(Drawable(z, self._vehicle(rng, lane, z, int(kind)), 'vehicle', lane,
                                    True))
        return out

    def _vehicle(self, rng, x, z, label, color=None, length=None) -> Draw:
        dims = {CAR: (1.8, 1.5, 4.4), TRUCK: (2.5, 3.4, 8.0), BUS: (2.6, 3.2, 12.0),
                TRAIN: (2.6, 3.6, 20.0)}[label]
        width, height = dims[0] * rng.uniform(0.92, 1.08), dims[1] * rng.uniform(0.9, 1.1)
        length = length or dims[2] * rng.uniform(0.9, 1.1)
        if color is None:
            base = {CAR: [(30, 30, 35), (200, 200, 205), (150, 20, 25), (30, 60, 130),
                          (120, 125, 130), (200, 170, 40)],
                    TRUCK: [(230, 230, 230), (60, 90, 140), (180, 60, 40)],
                    BUS: [(220, 200, 40), (200, 40, 40), (230, 230, 230)],
                    TRAIN: [(230, 230, 230), (200, 40, 40)]}[label]
            color = _jitter(rng, base[rng.integers(len(base))], 10)
        glass = np.array((60, 70, 85)) * rng.uniform(0.6, 1.2)

        def draw(cv, cam, _rng):
            inst = cv.new_instance(label)
            x0, x1 = x - width / 2, x + width / 2
            near = x1 if x < 0 else x0     # the side facing the camera axis
            body_top = height * (0.55 if label == CAR else 1.0)
            # visible side, then the rear face
            cv.poly([_side(cam, near, 0.25, body_top, z, z + length)], color * 0.8, label, inst)
            cv.poly([_quad(cam, x0, x1, 0.25, body_top, z)], color, label, inst)
            if label == CAR:  # cabin
                cabin = cam.project([x0 + 0.2, x1 - 0.2, x1 - 0.35, x0 + 0.35],
                                    [body_top] * 2 + [height] * 2, [z + 0.6] * 4)
                cv.poly([cabin], color, label, inst)
                side_cabin = cam.project([near] * 4, [body_top, height, height, body_top],
                                         [z + 0.6, z + 1.2, z + length - 1.2, z + length - 0.5])
                cv.poly([side_cabin], color * 0.8, label, inst)
                window = cam.project([x0 + 0.35, x1 - 0.35, x1 - 0.45, x0 + 0.45],
                                     [body_top + 0.05] * 2 + [height - 0.08] * 2, [z + 0.6] * 4)
                cv.paint([window], glass)
            else:  # windows band
                cv.paint([_quad(cam, x0 + 0.2, x1 - 0.2, height * 0.55, height * 0.9, z)], glass)
                cv.paint([_side(cam, near, height * 0.55, height * 0.85, z + 0.5,
                                z + length - 0.5)], glass)
            lights = [_quad(cam, x0 + 0.1, x0 + 0.35, body_top * 0.6, body_top * 0.8, z),
                      _quad(cam, x1 - 0.35, x1 - 0.1, body_top * 0.6, body_top * 0.8, z)]
            cv.paint(lights, (200, 30, 30))
            r = cam.scale(z) * 0.33
            for zz in (z + 0.9, z + length - 0.9):  # wheels on the visible side
                c = cam.project(near, 0.33, zz)
                cv.ellipse(c, (r * 0.35 * cam.scale(zz) / cam.scale(z), r), (20, 20, 22),
                           label, inst)
            for xx in (x0 + 0.3, x1 - 0.3):
                cv.poly([_quad(cam, xx - 0.15, xx + 0.15, 0, 0.3, z)], (20, 20, 22), label, inst)
        return draw

    def _two_wheeler(self, rng, x, z, label) -> Draw:
        rider_color = _jitter(rng, (60, 60, 80), 50)

        def draw(cv, cam, rng):
            bike = cv.new_instance(label)
            rider = cv.new_instance(RIDER)
            s = cam.scale(z)
            wheel_r = 0.33 * s
            base = cam.project(x, 0.33, z)
            frame_color = (30, 30, 30) if label == MOTORCYCLE else _jitter(rng, (40, 90, 160))
            # seen from behind: one wheel, a frame; seen slightly from the side: two wheels
            off = 0.3 * s * (1 if x > 0 else -1)
            for dx in (0, off):
                cv.ring((base[0] + dx, base[1]), wheel_r * (0.35 if dx == 0 else 1.0),
                        max(1, 0.06 * s), (25, 25, 25), label, bike)
            body = 0.25 if label == MOTORCYCLE else 0.06
            cv.line((base[0], base[1]), (base[0] + off, base[1] - 0.6 * s), max(1, body * s),
                    frame_color, label, bike)
            # rider: legs, torso, head
            hip = cam.project(x, 0.95, z)
            cv.poly([_quad(cam, x - 0.18, x + 0.18, 0.55, 0.95, z)], rider_color * 0.7, RIDER,
                    rider)
            cv.poly([_quad(cam, x - 0.22, x + 0.22, 0.95, 1.55, z)], rider_color, RIDER, rider)
            cv.ellipse((hip[0], hip[1] - 0.78 * s), (0.12 * s, 0.14 * s), (200, 160, 130),
                       RIDER, rider)
        return draw

    def _pedestrians(self, rng, st) -> list[Drawable]:
        out = []
        road, walk = st['road'], st['walk']
        for _ in range(rng.integers(0, 10)):
            side = rng.choice([-1, 1])
            if rng.random() < 0.15:  # crossing the road
                x, motion = rng.uniform(-road, road), 'crosser'
            else:
                x, motion = side * (road + walk * rng.uniform(0.15, 0.85)), 'walker'
            z = rng.uniform(3, st['far'] * 0.6)
            out.append(Drawable(z, self._person(rng, x, z, crowd=False), motion, x, True))
        if rng.random() < 0.35:  # a crowd group: persons labelled as one group region
            side = rng.choice([-1, 1])
            z0 = rng.uniform(15, 45)
            for _ in range(rng.integers(4, 9)):
                x = side * (road + walk * rng.uniform(0.2, 0.8))
                z = z0 + rng.uniform(0, 4)
                out.append(Drawable(z, self._person(rng, x, z, crowd=True), x=x, frontal=True))
        return out

    def _person(self, rng, x, z, crowd) -> Draw:
        height = rng.uniform(1.55, 1.95)
        top = _jitter(rng, rng.choice([(40, 40, 60), (180, 40, 40), (220, 220, 220),
                                       (60, 120, 60), (200, 150, 60)]), 25)
        legs = _jitter(rng, (50, 55, 80), 25)
        skin = _jitter(rng, (200, 160, 130), 30)
        stride = rng.uniform(-0.15, 0.15)

        def draw(cv, cam, _rng):
            inst = PERSON if crowd else cv.new_instance(PERSON)
            hip, shoulder = height * 0.5, height * 0.82
            for dx in (-0.1, 0.1):
                leg = cam.project([x + dx - 0.07, x + dx + 0.07, x + dx + 0.07 + stride * dx * 5,
                                   x + dx - 0.07 + stride * dx * 5], [hip, hip, 0, 0], [z] * 4)
                cv.poly([leg], legs, PERSON, inst)
            cv.poly([_quad(cam, x - 0.2, x + 0.2, hip, shoulder, z)], top, PERSON, inst)
            for dx in (-0.25, 0.25):  # arms
                cv.poly([_quad(cam, x + dx - 0.05, x + dx + 0.05, hip + 0.05, shoulder, z)],
                        top * 0.85, PERSON, inst)
            c = cam.project(x, shoulder + 0.12, z)
            s = cam.scale(z)
            cv.ellipse(c, (0.1 * s, 0.12 * s), skin, PERSON, inst)
        return draw

    # -- finishing ---------------------------------------------------------------------------
    def _ego_vehicle(self, rng, cv):
        h, w = self.h, self.w
        top = h * rng.uniform(0.86, 0.94)
        pts = np.array([[-0.1 * w, h + 5], [-0.1 * w, top + 0.06 * h], [0.5 * w, top],
                        [1.1 * w, top + 0.06 * h], [1.1 * w, h + 5]])
        cv.poly([pts], _jitter(rng, (40, 40, 45), 15), EGO, EGO)

    def _finish(self, rng, cv):
        """Texture, lighting, colour cast, contrast, blur and sensor noise (image only)."""
        import cv2

        h, w = self.h, self.w
        if h <= _NOISE_TILE_SIZE and w <= _NOISE_TILE_SIZE:
            oy = rng.integers(0, _NOISE_TILE_SIZE - h + 1)
            ox = rng.integers(0, _NOISE_TILE_SIZE - w + 1)
            tile = _TILE[oy:oy + h, ox:ox + w]
            grain = _TILE[(oy + 97) % (_NOISE_TILE_SIZE - h + 1):][:h, :w]
        else:
            tile = grain = cv2.resize(_TILE, (w, h))
        texture = tile * _TEXTURE[cv.label]
        texture += grain * np.float32(rng.uniform(1, 5))    # sensor noise
        # exposure x colour cast x horizontal light ramp x contrast, as one affine map
        contrast = rng.uniform(0.8, 1.2)
        gain = rng.uniform(0.55, 1.3) * rng.uniform(0.95, 1.05, 3) * contrast
        ramp = np.linspace(rng.uniform(0.85, 1.15), rng.uniform(0.85, 1.15), w)
        scale = (ramp[:, None] * gain[None, :]).astype(np.float32)[None]   # [1, W, 3]
        img = cv.image.astype(np.float32)
        img += texture[..., None]
        img *= scale
        img += np.float32(128.0 * (1 - contrast))
        if rng.random() < 0.3:
            k = int(rng.choice([3, 5]))
            img = cv2.GaussianBlur(img, (k, k), 0)
        np.clip(img, 0, 255, out=img)
        cv.image = img.astype(np.uint8)


def side_x(lane: float, road: float) -> float:
    """Two-wheelers keep to the outer part of their lane."""
    return float(np.sign(lane) * min(abs(lane) + 1.0, road - 0.8))
