"""The demo catalogue: about 50 home-fitness products and 150 variants, priced in USD, with
valid GTIN-13 barcodes, in collections, listed on every sales channel."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from seamline.catalog import collections, listings
from seamline.catalog import service as catalog
from seamline.catalog.codes import slugify
from seamline.catalog.models import Collection, Product
from seamline.catalog.schemas import CollectionCreate, ProductCreate

# GS1 US's example company prefix (061414 1): real-looking, never a real product.
GTIN_PREFIX = "0614141"

COLLECTIONS = {
    "kettlebells": "Kettlebells",
    "yoga": "Yoga & mobility",
    "dumbbells": "Dumbbells",
    "bands": "Resistance bands",
    "benches-racks": "Benches & racks",
    "cardio": "Cardio machines",
    "recovery": "Recovery",
    "accessories": "Accessories",
    "apparel": "Apparel",
    "home-gym-starter": "Home gym starter",
}

SIZES = ["XS", "S", "M", "L", "XL", "XXL"]
MAT_COLOURS = ["Slate", "Sage", "Clay", "Ocean", "Plum", "Black", "Sand", "Rose"]


@dataclass(frozen=True)
class Spec:
    """One product: ``variants`` are (SKU suffix, option values, price in cents, grams)."""

    code: str
    title: str
    collection: str
    tags: tuple[str, ...]
    variants: tuple[tuple[str, dict[str, str], int, int], ...]
    starter: bool = False


def _weights(
    code: str, title: str, kgs: list[float], price: Callable[[float], int], **kw: object
) -> Spec:
    variants = tuple(
        (f"{_num(kg)}KG", {"weight": f"{_num(kg)} kg"}, price(kg), int(kg * 1000) + 200)
        for kg in kgs
    )
    return Spec(code, title, variants=variants, **kw)  # type: ignore[arg-type]


def _num(kg: float) -> str:
    return str(int(kg)) if kg == int(kg) else str(kg).replace(".", "_")


def _one(code: str, title: str, cents: int, grams: int, collection: str, *tags: str) -> Spec:
    return Spec(code, title, collection, tags, (("STD", {}, cents, grams),))


def _choices(
    code: str,
    title: str,
    option: str,
    values: list[str],
    cents: int,
    grams: int,
    collection: str,
    *tags: str,
) -> Spec:
    variants = tuple(
        (value.upper().replace(" ", "-").replace("/", "-"), {option: value}, cents, grams)
        for value in values
    )
    return Spec(code, title, collection, tags, variants)


def _apparel(code: str, title: str, colours: list[str], sizes: list[str], cents: int) -> Spec:
    variants = tuple(
        (f"{colour.upper()}-{size}", {"colour": colour, "size": size}, cents, 250)
        for colour in colours
        for size in sizes
    )
    return Spec(code, title, "apparel", ("apparel",), variants)


PRODUCTS: list[Spec] = [
    _weights(
        "KB-CI",
        "Cast-Iron Kettlebell",
        [8, 12, 16, 20, 24, 28, 32],
        lambda kg: 2900 + int(kg) * 250,
        collection="kettlebells",
        tags=("kettlebell", "strength"),
        starter=True,
    ),
    _weights(
        "KB-CP",
        "Competition Kettlebell",
        [8, 12, 16, 20, 24, 28, 32],
        lambda kg: 5900 + int(kg) * 300,
        collection="kettlebells",
        tags=("kettlebell", "competition"),
    ),
    _weights(
        "KB-VN",
        "Vinyl Kettlebell",
        [4, 6, 8, 10],
        lambda kg: 1900 + int(kg) * 200,
        collection="kettlebells",
        tags=("kettlebell", "beginner"),
    ),
    _one("KB-ADJ", "Adjustable Kettlebell 12-32 kg", 24900, 32500, "kettlebells", "kettlebell"),
    _choices(
        "YM-EV",
        "Everyday Yoga Mat 5 mm",
        "colour",
        MAT_COLOURS,
        6800,
        1800,
        "yoga",
        "yoga",
        "mat",
    ),
    _choices(
        "YM-TR",
        "Travel Yoga Mat 1.5 mm",
        "colour",
        ["Slate", "Sage", "Clay"],
        4800,
        900,
        "yoga",
        "yoga",
        "mat",
        "travel",
    ),
    _one("YM-CORK", "Cork Yoga Mat", 8900, 2600, "yoga", "yoga", "mat"),
    _choices("YB", "Yoga Block Pair", "material", ["Cork", "Foam"], 2400, 900, "yoga", "yoga"),
    _one("YS", "Yoga Strap", 1400, 150, "yoga", "yoga"),
    _choices("MC", "Meditation Cushion", "colour", ["Sage", "Slate"], 5400, 1500, "yoga", "yoga"),
    _weights(
        "DB-HEX",
        "Hex Dumbbell",
        [2.5, 5, 7.5, 10, 12.5, 15, 20, 25, 30, 35],
        lambda kg: 1500 + int(kg * 180),
        collection="dumbbells",
        tags=("dumbbell", "strength"),
    ),
    _weights(
        "DB-NEO",
        "Neoprene Dumbbell Pair",
        [1, 2, 3, 4, 5],
        lambda kg: 1600 + int(kg) * 400,
        collection="dumbbells",
        tags=("dumbbell", "beginner"),
    ),
    _one("DB-ADJ", "Adjustable Dumbbell 24 kg", 29900, 24500, "dumbbells", "dumbbell"),
    _one("DB-RACK", "Dumbbell Rack", 13900, 14000, "dumbbells", "storage"),
    _choices(
        "BD-LOOP",
        "Loop Resistance Band",
        "resistance",
        ["Light", "Medium", "Heavy", "X-Heavy"],
        1800,
        200,
        "bands",
        "band",
    ),
    _one("BD-MINI", "Mini Band Set", 1600, 150, "bands", "band"),
    _choices(
        "BD-TUBE",
        "Tube Band with Handles",
        "resistance",
        ["Light", "Medium", "Heavy"],
        2200,
        400,
        "bands",
        "band",
    ),
    _choices(
        "BD-PULL",
        "Pull-Up Assist Band",
        "resistance",
        ["15 kg", "25 kg", "35 kg", "45 kg"],
        2600,
        500,
        "bands",
        "band",
    ),
    _one("BN-ADJ", "Adjustable Bench", 27900, 21000, "benches-racks", "bench", "strength"),
    _one("BN-FLAT", "Flat Bench", 14900, 15000, "benches-racks", "bench"),
    _one("RK-SQ", "Squat Stand", 34900, 38000, "benches-racks", "rack", "strength"),
    _one("RK-PULL", "Doorway Pull-Up Bar", 3900, 2200, "benches-racks", "pull-up"),
    _one("PB-3IN1", "3-in-1 Plyo Box", 17900, 16000, "benches-racks", "plyo"),
    _one("RW-AIR", "Air Rower", 89900, 26000, "cardio", "rower", "cardio"),
    _choices(
        "RW-WTR",
        "Water Rower",
        "finish",
        ["Oak", "Walnut"],
        119900,
        30000,
        "cardio",
        "rower",
        "cardio",
    ),
    _choices(
        "JR",
        "Jump Rope",
        "style",
        ["Speed", "Weighted"],
        2400,
        350,
        "cardio",
        "cardio",
    ),
    _one("TM-FOLD", "Folding Treadmill", 99900, 55000, "cardio", "treadmill", "cardio"),
    _one("SB", "Spin Bike", 69900, 42000, "cardio", "bike", "cardio"),
    _choices(
        "FR", "Foam Roller", "surface", ["Smooth", "Textured"], 2900, 700, "recovery", "recovery"
    ),
    _one("MB-SET", "Massage Ball Set", 1900, 400, "recovery", "recovery"),
    _one("MG", "Massage Gun", 14900, 1100, "recovery", "recovery"),
    _one("FM", "Floor Protection Mat", 7900, 9000, "accessories", "flooring"),
    _choices(
        "WV",
        "Weighted Vest",
        "weight",
        ["10 kg", "20 kg"],
        9900,
        15000,
        "accessories",
        "strength",
    ),
    _one("AW", "Ab Wheel", 2400, 900, "accessories", "core"),
    _one("CH", "Gym Chalk 250 g", 1200, 280, "accessories", "grip"),
    _choices("GL", "Lifting Gloves", "size", ["S", "M", "L"], 2900, 200, "accessories", "grip"),
    _choices(
        "WB",
        "Insulated Bottle 750 ml",
        "colour",
        ["Slate", "Sage", "Clay"],
        3200,
        450,
        "accessories",
        "bottle",
    ),
    _one("TW", "Gym Towel", 1800, 300, "accessories", "towel"),
    _weights(
        "SLAM",
        "Slam Ball",
        [4, 6, 8, 10],
        lambda kg: 2900 + int(kg) * 300,
        collection="accessories",
        tags=("conditioning",),
    ),
    _weights(
        "MED",
        "Medicine Ball",
        [3, 5],
        lambda kg: 3400 + int(kg) * 300,
        collection="accessories",
        tags=("conditioning",),
    ),
    _apparel("AP-TEE", "Training Tee", ["Black", "Heather"], SIZES, 3400),
    _apparel("AP-LEG", "Performance Leggings", ["Black", "Sage"], SIZES[:5], 7800),
    _apparel("AP-SHO", "Training Shorts", ["Black"], SIZES[:5], 4400),
    _apparel("AP-BRA", "Sports Bra", ["Black"], SIZES[:4], 5200),
    _apparel("AP-HOOD", "Zip Hoodie", ["Black", "Slate"], SIZES[1:5], 8800),
    _apparel("AP-TANK", "Tank Top", ["Black", "White"], SIZES[1:4], 2800),
    _choices(
        "AP-SOCK",
        "Training Socks 3-Pack",
        "size",
        ["S/M", "L/XL", "XXL"],
        1800,
        150,
        "apparel",
        "apparel",
    ),
    _one("AP-BEAN", "Rib Beanie", 2600, 120, "apparel", "apparel"),
    _one("BAG", "Gym Duffel Bag", 7400, 1100, "accessories", "bag"),
    Spec(
        "BUNDLE-START",
        "Home Gym Starter Bundle",
        "home-gym-starter",
        ("bundle",),
        (("STD", {}, 19900, 24000),),
        starter=True,
    ),
]


def gtin13(item: int) -> str:
    """A GTIN-13 under the demo prefix with its GS1 mod-10 check digit."""
    body = f"{GTIN_PREFIX}{item:05d}"
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


def product_payloads() -> list[ProductCreate]:
    """Every product with its variants, SKUs, barcodes and USD prices (deterministic)."""
    payloads = []
    item = 0
    for spec in PRODUCTS:
        variants = []
        for suffix, options, cents, grams in spec.variants:
            item += 1
            sku = f"KK-{spec.code}" if suffix == "STD" else f"KK-{spec.code}-{suffix}"
            title = " / ".join(options.values()) or spec.title
            variants.append(
                {
                    "sku": sku,
                    "barcode": gtin13(item),
                    "title": title,
                    "options": options,
                    "weight_grams": grams,
                    "prices": {"USD": {"amount": cents}},
                }
            )
        payloads.append(
            ProductCreate.model_validate(
                {
                    "title": spec.title,
                    "status": "active",
                    "description": f"{spec.title} from Kettle & Kin, built for small spaces.",
                    "tags": list(spec.tags),
                    "variants": variants,
                }
            )
        )
    return payloads


def product_count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Product)) or 0)


def seed_catalog(session: Session, channel_ids: dict[str, str], listed_on: tuple[str, ...]) -> int:
    """Create the catalogue (once: a product whose handle exists is skipped), its collections
    and its listings. Returns the products created."""
    existing = set(session.scalars(select(Product.handle)))
    made: dict[str, str] = {}
    for data, spec in zip(product_payloads(), PRODUCTS, strict=True):
        if slugify(data.title) in existing:
            continue
        created = catalog.create_product(session, data)
        made[spec.code] = created.id
        for handle in listed_on:
            listings.set_listing(session, created.id, channel_ids[handle], published=True)
    if not made:
        return 0
    known = dict(session.execute(select(Collection.handle, Collection.id)).all())
    for handle, title in COLLECTIONS.items():
        if handle not in known:
            spec_in = CollectionCreate(title=title, handle=handle)
            known[handle] = collections.create_collection(session, spec_in).id
    for spec in PRODUCTS:
        if spec.code not in made:
            continue
        collections.add_product(session, known[spec.collection], made[spec.code])
        if spec.starter and spec.collection != "home-gym-starter":
            collections.add_product(session, known["home-gym-starter"], made[spec.code])
    return len(made)
