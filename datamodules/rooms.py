"""Ray-cast rooms: the synthetic replica of Taskonomy's domains. A textured box room with spheres and boxes,
lit by a point light with shadows, seen from several points and angles; each view yields the RGB image and its
true depth, surface normals, occlusion edges and semantic segmentation."""

from __future__ import annotations

import numpy as np

from datamodules.synthetic import photo


def planes_hit(origin: np.ndarray, rays: np.ndarray, room: dict) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """(distance, normal, class) per pixel for the floor, ceiling, back and side walls (inward normals)."""
    found = []
    for axis, value, sign, cls in (
        (1, room["floor"], 1, 0),
        (1, room["ceiling"], -1, 2),
        (2, room["back"], -1, 1),
        (0, -room["side"], 1, 1),
        (0, room["side"], -1, 1),
    ):
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (value - origin[..., axis]) / rays[..., axis]
        normal = np.zeros(3)
        normal[axis] = sign
        found.append((np.where(t > 1e-4, t, np.inf), np.broadcast_to(normal, rays.shape), cls))
    return found


def spheres_hit(origin: np.ndarray, rays: np.ndarray, spheres: list[tuple[np.ndarray, float]]):
    found = []
    for centre, radius in spheres:
        oc = origin - centre
        b, c = (rays * oc).sum(-1), (oc * oc).sum(-1) - radius**2
        disc = b * b - c
        t = np.where(disc > 0, -b - np.sqrt(np.maximum(disc, 0)), np.inf)
        t = np.where(t > 1e-4, t, np.inf)
        normal = (origin + t[..., None] * rays - centre) / radius
        found.append((t, np.nan_to_num(normal), 3))
    return found


def boxes_hit(origin: np.ndarray, rays: np.ndarray, boxes: list[tuple[np.ndarray, np.ndarray]]):
    """Axis-aligned boxes by the slab method; the normal is the axis of the slab entered last."""
    found = []
    for low, high in boxes:
        with np.errstate(divide="ignore", invalid="ignore"):
            t1, t2 = (low - origin) / rays, (high - origin) / rays
        near, far = np.minimum(t1, t2), np.maximum(t1, t2)
        t_in, t_out = near.max(-1), far.min(-1)
        t = np.where((t_in <= t_out) & (t_in > 1e-4), t_in, np.inf)
        axis = near.argmax(-1)
        normal = -np.sign(np.take_along_axis(rays, axis[..., None], -1)) * np.eye(3)[axis]
        found.append((t, normal, 4))
    return found


def cast(
    origin: np.ndarray, rays: np.ndarray, scene: dict
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Nearest hit per ray: distance, normal, class, and which surface (for colouring)."""
    hits = (
        planes_hit(origin, rays, scene["room"])
        + spheres_hit(origin, rays, scene["spheres"])
        + boxes_hit(origin, rays, scene["boxes"])
    )
    distances = np.stack([h[0] for h in hits])
    which = distances.argmin(0)
    distance = np.take_along_axis(distances, which[None], 0)[0]
    normal = np.take_along_axis(np.stack([h[1] for h in hits]), which[None, ..., None], 0)[0]
    cls = np.array([h[2] for h in hits])[which]
    return distance, normal, cls, which


def texture(name: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    image = photo(name).astype(np.float32) / 255
    ys, xs = (np.abs(v * 40).astype(int) % image.shape[0]), (np.abs(u * 40).astype(int) % image.shape[1])
    return image[ys, xs]


def random_scene(rng: np.random.Generator) -> dict:
    room = {"floor": -1.0, "ceiling": 1.6, "back": rng.uniform(5, 8), "side": rng.uniform(2.5, 4)}
    spheres = [
        (np.array([rng.uniform(-1.8, 1.8), -1.0 + r, rng.uniform(2.5, 5)]), r)
        for r in rng.uniform(0.3, 0.7, rng.integers(1, 3))
    ]
    boxes = []
    for _ in range(rng.integers(1, 3)):
        x, z, (hx, height, hz) = rng.uniform(-1.8, 1.8), rng.uniform(2.5, 5), rng.uniform(0.25, 0.6, 3)
        boxes.append(
            (np.array([x - hx, -1.0, z - hz]), np.array([x + hx, -1.0 + 2 * height, z + hz]))
        )  # on the floor
    colours = rng.uniform(0.2, 1.0, (len(spheres) + len(boxes), 3))
    return {
        "room": room,
        "spheres": spheres,
        "boxes": boxes,
        "colours": colours,
        "light": np.array([rng.uniform(-1.5, 1.5), 1.4, rng.uniform(1, 3)]),
        "walls": ("brick", "gravel", "grass")[rng.integers(3)],
    }


def render(scene: dict, size: int, yaw: float, pitch: float) -> dict[str, np.ndarray]:
    """One view: rgb (uint8), depth (z-buffer, metres), normal (camera frame), segment (class), as arrays."""
    j, i = np.meshgrid(np.arange(size), np.arange(size))
    camera_rays = np.stack(
        [(j + 0.5 - size / 2) / size, -(i + 0.5 - size / 2) / size, np.ones_like(j, float)], -1
    )
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    rotation = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]]) @ np.array(
        [[1, 0, 0], [0, cp, -sp], [0, sp, cp]]
    )
    rays = camera_rays @ rotation.T
    rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
    origin = np.zeros(3)
    distance, normal, cls, which = cast(origin, rays, scene)
    points = origin + distance[..., None] * rays
    to_light = scene["light"] - points
    light_distance = np.linalg.norm(to_light, axis=-1, keepdims=True)
    to_light /= light_distance
    blocked = cast(points + 1e-3 * normal, to_light, scene)[0] < light_distance[..., 0]
    lambert = np.clip((normal * to_light).sum(-1), 0, 1) * ~blocked
    albedo = np.where(
        (cls == 0)[..., None],
        texture("gravel", points[..., 0], points[..., 2]),
        texture(scene["walls"], points[..., 0] + points[..., 2], points[..., 1]),
    )
    objects = which - 5  # the first five surfaces are the room's planes
    for k, colour in enumerate(scene["colours"]):
        albedo[objects == k] = colour
    rgb = np.clip(albedo * (0.25 + 0.75 * lambert[..., None]), 0, 1)
    z = distance * (
        camera_rays[..., 2] / np.linalg.norm(camera_rays, axis=-1)
    )  # the z-buffer, not the ray length
    return {
        "rgb": (rgb * 255).astype(np.uint8),
        "depth": z,
        "normal": normal @ rotation,
        "segment": cls.astype(np.uint8),
    }


def occlusion_edges(depth: np.ndarray) -> np.ndarray:
    """3D edges: where depth departs from its neighbours' straight-line prediction (a second difference) by
    more than ~3% of itself, as Taskonomy's edge_occlusion marks; a floor receding smoothly is not an edge."""
    padded = np.pad(depth, 1, mode="edge")
    across = np.abs(padded[1:-1, 2:] - 2 * depth + padded[1:-1, :-2])
    down = np.abs(padded[2:, 1:-1] - 2 * depth + padded[:-2, 1:-1])
    return np.clip((np.maximum(across, down) / depth - 0.03) * 25, 0, 1)
