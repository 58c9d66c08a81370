"""Demo data: three shops with staff, catalog, warehouses, stock, customers and months of order history.

Everything goes through the command functions the CLI and the app use (place_order, pay_order, ...), with
business time passed as at=, so the event log is real. The history has weekday/weekend rhythm, a
November-December peak, a mix of channels, cancellations, expired reservations, returns, out-of-stock
rejections and restocking when stock runs low.

Deterministic for a seed (and an end time): each shop draws from its own random.Random, every command
carries an idempotency key derived from the seed, and the generator decides only from its random stream
and the commands' results, which a repeated key replays. Passwords are the exception: they come from
`secrets`, are printed once and are never derived from the seed.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import re
import secrets
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from typing import Any
from zoneinfo import ZoneInfo

from core import catalog, customers, inventory, tenants
from core.commands import SYSTEM, Actor
from core.db import Database
from core.errors import ValidationError
from core.orders import handlers as orders
from core.orders.model import OutOfStock
from core.payments import service as payments

DEFAULT_ORDERS = 3000
DEFAULT_SEED = 7
DEFAULT_PREFIX = "demo"
HISTORY_DAYS = 183
MAX_ORDERS = 200_000

Progress = Callable[[str, int, int, str], None]  # (shop, done, total, stage)


@dataclass(frozen=True)
class Shop:
    key: str
    name: str
    currency: str
    time_zone: str
    share: float  # of all orders
    tax_rate_bp: int
    reservation_minutes: int
    allocation_strategy: str
    warehouses: tuple[tuple[str, str, str, int], ...]  # code, name, region, priority
    products: tuple[tuple[str, str, str, int], ...]  # sku, name, category, price (minor units)
    channels: dict[str, float]
    carriers: tuple[str, ...]
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]
    phone: Callable[[random.Random], str]
    shipping_fee: int
    free_shipping_over: int
    return_rate: float  # of delivered orders
    weekend: float  # weekend demand relative to a weekday
    lines: dict[int, float]
    quantities: dict[int, float]
    staff: tuple[str, ...]  # display names of owner, manager, clerk, analyst


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


US_FIRST = _words(
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara Richard Susan "
    "Joseph Jessica Thomas Sarah Carlos Maria Wei Priya Aisha Daniel Emily Olivia Noah Liam Sofia Mateo "
    "Grace Ethan Chloe Jamal Hannah Diego Mei Omar Zoe Isaac"
)
US_LAST = _words(
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Nguyen Kim "
    "Patel Chen Wilson Anderson Thomas Taylor Moore Jackson Lee Walker Young Allen King Wright Scott Green "
    "Baker Adams Nelson Hill Ramirez Campbell Mitchell Roberts Carter Phillips"
)
FR_FIRST = _words(
    "Camille Léa Manon Chloé Inès Louise Emma Jade Lucas Hugo Louis Gabriel Arthur Jules Raphaël Nathan "
    "Paul Thomas Sarah Yasmine Zoé Alice Clément Théo Margaux Élodie Antoine Mathilde Bastien Juliette "
    "Hélène Noémie Romain Karim Sofiane Lina"
)
FR_LAST = _words(
    "Martin Bernard Dubois Thomas Robert Richard Petit Durand Leroy Moreau Simon Laurent Lefebvre Michel "
    "Garcia Fontaine Rousseau Girard Bonnet Dupont Lambert Mercier Faure André Blanc Guérin Muller Henry "
    "Roussel Nicolas Perrin Morin Mathieu Clément Gauthier Dumont Lopez Chevalier"
)
UK_FIRST = _words(
    "Oliver George Harry Jack Amelia Olivia Isla Ava Emily Sophie Charlotte Thomas William James Mohammed "
    "Priya Grace Ella Lucy Alfie Freya Poppy Arthur Noah Evie Florence Rory Callum Niamh Siobhan Rhys "
    "Megan Aisha Kwame Hamish Eilidh"
)
UK_LAST = _words(
    "Smith Jones Taylor Brown Williams Wilson Johnson Davies Robinson Wright Thompson Evans Walker White "
    "Roberts Green Hall Wood Jackson Clarke Khan Patel Hughes Edwards Campbell MacDonald Murphy O'Brien "
    "Stewart Lewis Morgan Price Begum Ahmed Okafor Fraser"
)


def _us_phone(rng: random.Random) -> str:
    # 555-0100 to 555-0199 are reserved for fiction in every North American area code.
    return f"+1 {rng.choice((212, 347, 646, 718, 917))}-555-01{rng.randrange(100):02d}"


def _fr_phone(rng: random.Random) -> str:
    # 06 39 98 xx xx is the range French regulation keeps for fiction.
    return f"+33 6 39 98 {rng.randrange(100):02d} {rng.randrange(100):02d}"


def _uk_phone(rng: random.Random) -> str:
    # 07700 900000 to 900999 are Ofcom's drama numbers.
    return f"+44 7700 900{rng.randrange(1000):03d}"


SHOPS: tuple[Shop, ...] = (
    Shop(
        key="electronics",
        name="Volt & Byte Electronics",
        currency="USD",
        time_zone="America/New_York",
        share=0.40,
        tax_rate_bp=888,
        reservation_minutes=20,
        allocation_strategy="priority",
        warehouses=(
            ("NJ1", "Newark Fulfilment Center", "us-east", 10),
            ("TX1", "Dallas Fulfilment Center", "us-central", 20),
            ("NV1", "Reno Fulfilment Center", "us-west", 30),
        ),
        products=(
            ("LAP-AERO13", "Aero 13 Laptop, 16 GB / 512 GB", "Laptops", 109900),
            ("LAP-PRO15", "Pro 15 Laptop, 32 GB / 1 TB", "Laptops", 189900),
            ("LAP-CHROME14", "Chromebook 14", "Laptops", 34900),
            ("PHN-NOVA12", "Nova X12 Smartphone 128 GB", "Phones", 79900),
            ("PHN-NOVA12P", "Nova X12 Pro Smartphone 256 GB", "Phones", 109900),
            ("PHN-LITE", "Nova Lite Smartphone 64 GB", "Phones", 29900),
            ("TAB-SLATE10", "Slate 10 Tablet", "Tablets", 44900),
            ("TAB-MINI", "Slate Mini Tablet", "Tablets", 32900),
            ("AUD-NC700", "NC700 Noise-Cancelling Headphones", "Audio", 29900),
            ("AUD-BUDS2", "Pulse Buds 2 Wireless Earbuds", "Audio", 12900),
            ("AUD-BOOM", "Boom Portable Bluetooth Speaker", "Audio", 7900),
            ("AUD-BAR31", "Cinema 3.1 Soundbar", "Audio", 39900),
            ("TV-OLED55", '55" 4K OLED TV', "TV & Video", 149900),
            ("TV-LED43", '43" 4K LED TV', "TV & Video", 37900),
            ("TV-STICK4K", "4K Streaming Stick", "TV & Video", 4900),
            ("GAM-ORBIT", "Orbit Game Console 1 TB", "Gaming", 49900),
            ("GAM-PAD", "Orbit Wireless Controller", "Gaming", 6900),
            ("GAM-HEADSET", "Orbit Gaming Headset", "Gaming", 8900),
            ("CAM-M24", "Mirrorless Camera Body 24 MP", "Cameras", 99900),
            ("CAM-ACTION4K", "Action Cam 4K", "Cameras", 24900),
            ("SMH-HUB", "Smart Home Hub", "Smart Home", 9900),
            ("SMH-BULB4", "Smart Bulb, 4-pack", "Smart Home", 4999),
            ("SMH-CAM", "Indoor Security Camera", "Smart Home", 5999),
            ("SMH-THERMO", "Smart Thermostat", "Smart Home", 17900),
            ("WRB-STRIDE3", "Stride 3 Fitness Tracker", "Wearables", 9900),
            ("WRB-WATCH44", "Pulse Smartwatch 44 mm", "Wearables", 27900),
            ("ACC-CHG65", "65 W USB-C Charger", "Accessories", 3999),
            ("ACC-CABLE2M", "USB-C Cable, 2 m", "Accessories", 1499),
            ("ACC-PWR20K", "Power Bank 20,000 mAh", "Accessories", 4999),
            ("ACC-MOUSE", "Wireless Mouse", "Accessories", 2999),
            ("ACC-KEYB", "Mechanical Keyboard", "Accessories", 8999),
            ("STO-SSD1TB", "Portable SSD 1 TB", "Storage", 10999),
            ("STO-SD128", "microSD Card 128 GB", "Storage", 1999),
        ),
        channels={"web": 0.58, "marketplace": 0.24, "pos": 0.12, "phone": 0.06},
        carriers=("UPS", "FedEx", "USPS"),
        first_names=US_FIRST,
        last_names=US_LAST,
        phone=_us_phone,
        shipping_fee=599,
        free_shipping_over=4900,
        return_rate=0.05,
        weekend=1.2,
        lines={1: 0.66, 2: 0.24, 3: 0.08, 4: 0.02},
        quantities={1: 0.86, 2: 0.11, 3: 0.03},
        staff=("Dana Whitfield", "Marcus Lee", "Tina Alvarez", "Sam Okafor"),
    ),
    Shop(
        key="fashion",
        name="Maison Lumière",
        currency="EUR",
        time_zone="Europe/Paris",
        share=0.35,
        tax_rate_bp=2000,
        reservation_minutes=30,
        allocation_strategy="most_available",
        warehouses=(
            ("PAR", "Paris Nord Entrepôt", "fr-idf", 10),
            ("LYS", "Lyon Saint-Exupéry", "fr-ara", 20),
            ("BER", "Berlin Tempelhof", "de-be", 30),
        ),
        products=(
            ("TEE-ORG-S", "Organic Cotton T-Shirt, S", "Tops", 2900),
            ("TEE-ORG-M", "Organic Cotton T-Shirt, M", "Tops", 2900),
            ("TEE-ORG-L", "Organic Cotton T-Shirt, L", "Tops", 2900),
            ("TOP-BRETON", "Breton Striped Top", "Tops", 4500),
            ("SHI-LINEN", "Linen Shirt", "Tops", 6900),
            ("KNT-MERINO", "Merino Crew Jumper", "Knitwear", 8900),
            ("KNT-CASHCARD", "Cashmere Cardigan", "Knitwear", 15900),
            ("DRS-WRAP", "Wrap Midi Dress", "Dresses", 8900),
            ("DRS-SLIP", "Satin Slip Dress", "Dresses", 7900),
            ("DRS-SHIRT", "Poplin Shirt Dress", "Dresses", 6900),
            ("JNS-STR-30", "Straight Jeans, W30", "Trousers", 7900),
            ("JNS-STR-32", "Straight Jeans, W32", "Trousers", 7900),
            ("JNS-STR-34", "Straight Jeans, W34", "Trousers", 7900),
            ("TRS-WIDE", "Wide-Leg Trousers", "Trousers", 6900),
            ("SHO-CHINO", "Chino Shorts", "Trousers", 4500),
            ("OUT-TRENCH", "Classic Trench Coat", "Outerwear", 18900),
            ("OUT-WOOLCOAT", "Wool Overcoat", "Outerwear", 24900),
            ("OUT-QUILT", "Quilted Jacket", "Outerwear", 12900),
            ("OUT-DENIM", "Denim Jacket", "Outerwear", 8900),
            ("SNK-LTH-38", "Leather Sneakers, 38", "Shoes", 11900),
            ("SNK-LTH-40", "Leather Sneakers, 40", "Shoes", 11900),
            ("SNK-LTH-42", "Leather Sneakers, 42", "Shoes", 11900),
            ("BOO-CHELSEA", "Chelsea Boots", "Shoes", 16900),
            ("SHO-BALLET", "Ballet Flats", "Shoes", 7900),
            ("SHO-ESPAD", "Espadrilles", "Shoes", 4900),
            ("ACC-SCARF", "Silk Scarf", "Accessories", 5900),
            ("ACC-BELT", "Leather Belt", "Accessories", 3900),
            ("ACC-TOTE", "Canvas Tote Bag", "Accessories", 2500),
            ("ACC-BEANIE", "Wool Beanie", "Accessories", 2500),
            ("ACC-XBODY", "Leather Crossbody Bag", "Accessories", 12900),
            ("ACC-SUNGL", "Acetate Sunglasses", "Accessories", 8900),
        ),
        channels={"web": 0.55, "pos": 0.26, "marketplace": 0.15, "phone": 0.04},
        carriers=("Colissimo", "Chronopost", "DHL"),
        first_names=FR_FIRST,
        last_names=FR_LAST,
        phone=_fr_phone,
        shipping_fee=490,
        free_shipping_over=7500,
        return_rate=0.085,
        weekend=1.3,
        lines={1: 0.55, 2: 0.28, 3: 0.12, 4: 0.05},
        quantities={1: 0.9, 2: 0.08, 3: 0.02},
        staff=("Claire Fontaine", "Julien Moreau", "Inès Haddad", "Lucas Bernard"),
    ),
    Shop(
        key="books",
        name="Inkwell & Quire Books",
        currency="GBP",
        time_zone="Europe/London",
        share=0.25,
        tax_rate_bp=0,  # books are zero-rated for VAT in the UK
        reservation_minutes=60,
        allocation_strategy="priority",
        warehouses=(
            ("LON", "London Park Royal", "uk-south", 10),
            ("MAN", "Manchester Trafford Park", "uk-north", 20),
            ("EDI", "Edinburgh Newbridge", "uk-scotland", 30),
        ),
        products=(
            ("FIC-PRIDE-PB", "Pride and Prejudice (paperback)", "Fiction", 799),
            ("FIC-MIDDLE-PB", "Middlemarch (paperback)", "Fiction", 999),
            ("FIC-EXPECT-PB", "Great Expectations (paperback)", "Fiction", 799),
            ("FIC-EYRE-PB", "Jane Eyre (paperback)", "Fiction", 699),
            ("FIC-HEIGHTS-PB", "Wuthering Heights (paperback)", "Fiction", 699),
            ("FIC-FRANK-PB", "Frankenstein (paperback)", "Fiction", 699),
            ("FIC-DRACULA-PB", "Dracula (paperback)", "Fiction", 799),
            ("FIC-DORIAN-PB", "The Picture of Dorian Gray (paperback)", "Fiction", 699),
            ("FIC-HOLMES-HB", "Sherlock Holmes: The Complete Stories (hardback)", "Fiction", 2499),
            ("CHI-ALICE-HB", "Alice's Adventures in Wonderland, illustrated (hardback)", "Children", 1499),
            ("CHI-WILLOWS-PB", "The Wind in the Willows (paperback)", "Children", 899),
            ("CHI-PAN-PB", "Peter Pan (paperback)", "Children", 699),
            ("CHI-TREASURE-PB", "Treasure Island (paperback)", "Children", 699),
            ("CHI-GARDEN-PB", "The Secret Garden (paperback)", "Children", 799),
            ("NF-TEA-HB", "A Short History of Tea (hardback)", "Non-fiction", 1299),
            ("NF-COAST-PB", "Walking the Coast Path (paperback)", "Non-fiction", 1499),
            ("NF-NUMBERS-PB", "Numbers in Everyday Life (paperback)", "Non-fiction", 1099),
            ("NF-ORIGIN-PB", "On the Origin of Species (paperback)", "Science", 999),
            ("SCI-STARS-HB", "Stars over the Moor: A Stargazer's Guide (hardback)", "Science", 1499),
            ("SCI-TINY-PB", "The Tiny Universe (paperback)", "Science", 1299),
            ("COOK-BREAD-HB", "Bread Every Day (hardback)", "Cookery", 2200),
            ("COOK-ONEPAN-HB", "One-Pan Suppers (hardback)", "Cookery", 1800),
            ("COOK-VEG-HB", "The Vegetable Year (hardback)", "Cookery", 2500),
            ("TRV-EDINBURGH", "Edinburgh Pocket Guide", "Travel", 899),
            ("TRV-LAKES", "Lake District Walks", "Travel", 1299),
            ("TRV-PARIS", "Paris in a Weekend", "Travel", 999),
            ("GFT-NOTEBOOK", "Clothbound Notebook, A5", "Gifts & Stationery", 1299),
            ("GFT-TOTE", "Literary Tote Bag", "Gifts & Stationery", 1500),
            ("GFT-BOOKMARK", "Brass Bookmark Set", "Gifts & Stationery", 499),
            ("GFT-LIGHT", "Clip-on Reading Light", "Gifts & Stationery", 1299),
        ),
        channels={"web": 0.5, "pos": 0.3, "marketplace": 0.15, "phone": 0.05},
        carriers=("Royal Mail", "DPD", "Evri"),
        first_names=UK_FIRST,
        last_names=UK_LAST,
        phone=_uk_phone,
        shipping_fee=299,
        free_shipping_over=2500,
        return_rate=0.03,
        weekend=1.35,
        lines={1: 0.5, 2: 0.3, 3: 0.14, 4: 0.06},
        quantities={1: 0.9, 2: 0.08, 3: 0.02},
        staff=("Harriet Quill", "Owen Pryce", "Niamh Doyle", "Ravi Chandra"),
    ),
)

# Hour-of-day weights for orders placed online or by phone (local time).
ONLINE_HOURS = (
    1,
    0.6,
    0.4,
    0.3,
    0.3,
    0.5,
    1,
    2,
    3,
    4,
    5,
    5.5,
    6.5,
    6,
    5,
    5,
    5,
    5.5,
    6.5,
    8,
    8.5,
    7.5,
    5,
    2.5,
)
CANCEL_REASONS_UNPAID = ("customer changed their mind", "duplicate order", "payment declined")
CANCEL_REASONS_PAID = ("customer request", "address could not be verified", "ordered the wrong size")
P_EXPIRE = 0.045  # an unpaid reservation that runs out
P_CANCEL_UNPAID = 0.03
P_CANCEL_PAID = 0.033
P_BULK = 0.015  # a line with a bulk quantity, often more than the shop holds
P_SUPPLIER_DELAY = 0.12
WAREHOUSE_SHARE = (0.5, 0.3, 0.2)


def black_friday(year: int) -> date:
    """The day after the fourth Thursday of November."""
    first = date(year, 11, 1)
    thursday = first + timedelta(days=(3 - first.weekday()) % 7 + 21)
    return thursday + timedelta(days=1)


def season(day: date, shop: Shop) -> float:
    """Demand on a day relative to an ordinary weekday: weekends, summer, and the year-end peak."""
    weekend = shop.weekend if day.weekday() >= 5 else (0.95 if day.weekday() == 4 else 1.0)
    bf = black_friday(day.year)
    if bf - timedelta(days=1) <= day <= bf + timedelta(days=3):  # Thanksgiving to Cyber Monday
        peak = 2.8
    elif day.month == 11:
        peak = 1.5 if day > bf else 1.25
    elif day.month == 12:
        peak = {25: 0.3, 24: 1.1}.get(day.day, 1.8 if day.day <= 20 else 1.3)
    elif day.month in (7, 8):
        peak = 1.15 if shop.key == "fashion" and day.month == 7 else 0.85  # summer sales, then holidays
    else:
        peak = 1.0
    return weekend * peak


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower().replace("'", "")


@dataclass
class _Order:
    index: int
    at: datetime
    channel: str
    customer_id: str
    lines: list[tuple[str, int]]
    fee: int
    oid: str = ""
    number: int = 0
    status: str = "planned"
    allocations: list[dict[str, Any]] = field(default_factory=list)
    to_ship: list[str] = field(default_factory=list)
    returned: dict[int, int] = field(default_factory=dict)
    returns: int = 0


class _ShopRun:
    """One shop's setup and history, played in business-time order."""

    def __init__(
        self,
        db: Database,
        tenant: tenants.Tenant,
        shop: Shop,
        *,
        orders: int,
        seed: int,
        end: datetime,
        progress: Progress | None,
        stop: threading.Event | None = None,
    ):
        self.db, self.tenant, self.tid, self.shop = db, tenant, tenant.id, shop
        self.n_orders, self.seed, self.end = orders, seed, end
        self.rng = random.Random(f"oms-demo:{seed}:{shop.key}")
        self.zone = ZoneInfo(shop.time_zone)
        self.progress = progress or (lambda *_: None)
        self.stop = stop or threading.Event()
        self.heap: list[tuple[datetime, int, str, Any]] = []
        self.seq = itertools.count()
        self.available: dict[tuple[str, str], int] = {}
        self.pending_po: set[str] = set()
        self.po_count = itertools.count(1)
        self.orders: list[_Order] = []
        self.placed = 0
        self.stats: Counter[str] = Counter()
        codes = [w[0] for w in shop.warehouses]
        self.codes = codes
        self.prices = {p[0]: p[3] for p in shop.products}
        self.start_day = (end.astimezone(self.zone) - timedelta(days=HISTORY_DAYS)).date()
        # The shop opens the evening before its first day of trade: stock, customers, reorder points.
        self.opening = self.local(self.start_day - timedelta(days=1), 18)
        self.end_day = end.astimezone(self.zone).date()

    # Helpers

    def key(self, *parts: object) -> str:
        return ":".join(("demo", str(self.seed), *map(str, parts)))

    def push(self, at: datetime, kind: str, payload: Any = None) -> None:
        heapq.heappush(self.heap, (at, next(self.seq), kind, payload))

    def local(self, day: date, hours: float) -> datetime:
        return datetime.combine(day, clock_time(0), self.zone) + timedelta(hours=hours)

    def working_hours(self, at: datetime, start: float = 8, end: float = 18) -> datetime:
        """Move a time into the next working window (Monday to Saturday)."""
        loc = at.astimezone(self.zone)
        hour = loc.hour + loc.minute / 60
        day = loc.date()
        if hour >= end:
            day, hour = day + timedelta(days=1), start + self.rng.uniform(0, 3)
        elif hour < start:
            hour = start + self.rng.uniform(0, 3)
        if day.weekday() == 6:
            day += timedelta(days=1)
        return self.local(day, hour)

    # Setup

    def setup_staff(self) -> list[dict[str, str]]:
        existing = {u.username for u in tenants.list_users(self.db, self.tid)}
        users = []
        for role, display in zip(tenants.ROLES, self.shop.staff, strict=True):
            username = f"{self.shop.key}.{role}"
            if username in existing:
                continue
            password = secrets.token_urlsafe(12)
            tenants.add_user(self.db, self.tid, username, role, password, display_name=display, actor="demo")
            users.append({"username": username, "role": role, "display_name": display, "password": password})
        self.owner = Actor(f"{self.shop.key}.owner", "owner")
        self.manager = Actor(f"{self.shop.key}.manager", "manager")
        self.clerk = Actor(f"{self.shop.key}.clerk", "clerk")
        self.storefront = Actor("storefront", "clerk")
        return users

    def setup_catalog(self) -> None:
        shop, rng, db, tid = self.shop, self.rng, self.db, self.tid
        tenants.change_settings(
            db,
            tid,
            self.owner,
            key=self.key("settings"),
            allocation_strategy=shop.allocation_strategy,
            reservation_minutes=shop.reservation_minutes,
            tax_rate_bp=shop.tax_rate_bp,
        )
        # A simulated card gateway with a backup, so charges, retries and failures show in the app.
        payments.set_gateways(
            db,
            tid,
            self.owner,
            [
                {
                    "name": "cards",
                    "kind": "simulated",
                    "latency_ms": 80,
                    "transient_rate": 0.15,
                    "decline_rate": 0.05,
                    "seed": 7,
                },
                {"name": "backup", "kind": "simulated", "latency_ms": 150, "transient_rate": 0.05, "seed": 1},
            ],
            key=self.key("gateways"),
        )
        for code, name, region, priority in shop.warehouses:
            catalog.add_warehouse(
                db,
                tid,
                self.owner,
                key=self.key("warehouse", code),
                code=code,
                name=name,
                region=region,
                priority=priority,
            )
        for sku, name, category, price in shop.products:
            catalog.add_product(
                db,
                tid,
                self.owner,
                key=self.key("product", sku),
                sku=sku,
                name=name,
                category=category,
                price=price,
            )
        # Popularity falls with price, with some luck; expected units a day follow from it.
        weights = [math.sqrt(100_000 / p[3]) * rng.uniform(0.5, 1.6) for p in shop.products]
        total = sum(weights)
        self.popularity = [w / total for w in weights]
        mean = lambda dist: sum(k * v for k, v in dist.items()) / sum(dist.values())  # noqa: E731
        per_day = self.n_orders / HISTORY_DAYS * mean(shop.lines) * mean(shop.quantities)
        self.demand = {p[0]: per_day * share for p, share in zip(shop.products, self.popularity, strict=True)}
        for sku, _, _, _ in shop.products:
            d = self.demand[sku]
            stock = round(d * rng.uniform(30, 50)) + rng.randint(3, 8)
            for code, share in zip(self.codes, WAREHOUSE_SHARE, strict=True):
                point = max(1, round(d * 7 * share))
                inventory.set_reorder_point(
                    db,
                    tid,
                    self.manager,
                    key=self.key("reorder", sku, code),
                    at=self.opening,
                    sku=sku,
                    warehouse=code,
                    reorder_point=point,
                )
                self._receive(
                    sku, code, max(1, round(stock * share)), self.key("opening", sku, code), self.opening
                )

    def setup_customers(self) -> None:
        shop, rng = self.shop, self.rng
        count = min(150, max(50, round(self.n_orders / 8)))
        self.customer_ids: list[str] = []
        seen: set[str] = set()
        walk_in = customers.add_customer(
            self.db,
            self.tid,
            self.clerk,
            key=self.key("customer", "walk-in"),
            at=self.opening,
            name="Walk-in customer",
            notify_email=False,
        )
        self.walk_in = walk_in["id"]
        for i in range(count):
            first, last = rng.choice(shop.first_names), rng.choice(shop.last_names)
            email = ""
            if rng.random() < 0.92:
                local = f"{_ascii(first)}.{_ascii(last)}"
                if local in seen:
                    local = f"{local}{i}"
                seen.add(local)
                email = f"{local}@example.{rng.choice(('com', 'net', 'org'))}"
            phone = shop.phone(rng) if rng.random() < 0.7 else ""
            c = customers.add_customer(
                self.db,
                self.tid,
                self.clerk,
                key=self.key("customer", i),
                at=self.opening,
                name=f"{first} {last}",
                email=email,
                phone=phone,
                notify_email=bool(email) and rng.random() < 0.85,
                notify_sms=bool(phone) and rng.random() < 0.35,
                notify_push=rng.random() < 0.2,
            )
            self.customer_ids.append(c["id"])
        # A few regulars order most: a Zipf-like weight over the customers.
        self.customer_weights = [1 / (i + 1) ** 0.8 for i in range(count)]

    # The plan: when each order comes in, on which channel, from whom, for what.

    def plan(self) -> list[_Order]:
        shop, rng = self.shop, self.rng
        days = [self.start_day + timedelta(days=i) for i in range((self.end_day - self.start_day).days + 1)]
        growth = [1 + 0.25 * i / len(days) for i in range(len(days))]
        weights = [season(d, shop) * g for d, g in zip(days, growth, strict=True)]
        end_local = self.end.astimezone(self.zone)
        weights[-1] *= (end_local.hour + end_local.minute / 60) / 24  # today has only begun
        skus = [p[0] for p in shop.products]
        channels, channel_weights = list(shop.channels), list(shop.channels.values())
        planned = []
        for day_index in sorted(rng.choices(range(len(days)), weights=weights, k=self.n_orders)):
            day = days[day_index]
            channel = rng.choices(channels, channel_weights)[0]
            for _ in range(20):
                if channel == "pos":  # the shop is open 9:00 to 19:00
                    hours = rng.uniform(9, 19)
                else:
                    hours = rng.choices(range(24), ONLINE_HOURS)[0] + rng.random()
                at = self.local(day, hours)
                if at < self.end:
                    break
            else:
                at = self.end - timedelta(minutes=rng.uniform(1, 60))
            n_lines = rng.choices(list(shop.lines), list(shop.lines.values()))[0]
            chosen: list[str] = []
            while len(chosen) < n_lines:
                sku = rng.choices(skus, self.popularity)[0]
                if sku not in chosen:
                    chosen.append(sku)
            lines = [
                (s, rng.choices(list(shop.quantities), list(shop.quantities.values()))[0]) for s in chosen
            ]
            if rng.random() < P_BULK:
                lines[0] = (lines[0][0], rng.randint(12, 40))
            if channel == "pos" and rng.random() < 0.5:
                customer = self.walk_in
            else:
                customer = rng.choices(self.customer_ids, self.customer_weights)[0]
            subtotal = sum(self.prices[s] * q for s, q in lines)
            fee = 0 if channel == "pos" or subtotal >= shop.free_shipping_over else shop.shipping_fee
            planned.append(_Order(0, at, channel, customer, lines, fee))
        planned.sort(key=lambda o: o.at)
        for i, o in enumerate(planned):
            o.index = i
        return planned

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        self.progress(self.shop.key, 0, self.n_orders, "staff")
        users = self.setup_staff()
        self.progress(self.shop.key, 0, self.n_orders, "catalog and stock")
        self.setup_catalog()
        self.progress(self.shop.key, 0, self.n_orders, "customers")
        self.setup_customers()
        self.orders = self.plan()
        for o in self.orders:
            self.push(o.at, "place", o)
        day = self.start_day
        while day <= self.end_day:
            self.push(self.local(day, 7), "daily", day)
            day += timedelta(days=1)
        self.progress(self.shop.key, 0, self.n_orders, "orders")
        while self.heap:
            at, _, kind, payload = heapq.heappop(self.heap)
            if at > self.end:
                break  # what would happen later is still open: paid, shipped, in transit
            if self.stop.is_set():
                raise _Stopped
            getattr(self, f"on_{kind}")(at, payload)
        self.progress(self.shop.key, self.n_orders, self.n_orders, "done")
        statuses = Counter(o.status for o in self.orders)
        return {
            "slug": self.tenant.slug,
            "name": self.tenant.name,
            "id": str(self.tid),
            "currency": self.shop.currency,
            "time_zone": self.shop.time_zone,
            "users": users,
            "products": len(self.shop.products),
            "warehouses": len(self.shop.warehouses),
            "customers": len(self.customer_ids) + 1,
            "orders": len(self.orders),
            "statuses": dict(sorted(statuses.items())),
            "stock": dict(sorted(self.stats.items())),
            "history_from": self.orders[0].at.isoformat() if self.orders else None,
            "history_to": self.orders[-1].at.isoformat() if self.orders else None,
            "seconds": round(time.monotonic() - started, 1),
        }

    # Stock

    def _receive(self, sku: str, code: str, quantity: int, key: str, at: datetime) -> None:
        inventory.receive(
            self.db, self.tid, self.manager, key=key, at=at, sku=sku, warehouse=code, quantity=quantity
        )
        self.available[sku, code] = self.available.get((sku, code), 0) + quantity

    def _release(self, o: _Order) -> None:
        for a in o.allocations:
            self.available[a["sku"], a["warehouse"]] += a["quantity"]

    def on_daily(self, at: datetime, day: date) -> None:
        """Morning stock review: order what runs low, balance warehouses, record breakage."""
        rng = self.rng
        for sku, _, _, _ in self.shop.products:
            total = sum(self.available.get((sku, c), 0) for c in self.codes)
            d = self.demand[sku]
            if sku not in self.pending_po and total < max(2, d * 12):
                lead = rng.randint(9, 16) if rng.random() < P_SUPPLIER_DELAY else rng.randint(2, 6)
                quantity = max(6, round(d * rng.uniform(30, 50)))
                self.pending_po.add(sku)
                arrival = self.local(day + timedelta(days=lead), rng.uniform(8, 12))
                self.push(arrival, "delivery", (sku, quantity, next(self.po_count)))
            levels = {c: self.available.get((sku, c), 0) for c in self.codes}
            empty = [c for c, n in levels.items() if n == 0]
            fullest = max(levels, key=lambda c: (levels[c], c))
            if empty and levels[fullest] >= max(6, d * 20) and rng.random() < 0.25:
                quantity = levels[fullest] // 3
                inventory.transfer(
                    self.db,
                    self.tid,
                    self.manager,
                    key=self.key("transfer", sku, day),
                    at=at,
                    sku=sku,
                    source=fullest,
                    destination=empty[0],
                    quantity=quantity,
                )
                self.available[sku, fullest] -= quantity
                self.available[sku, empty[0]] += quantity
                self.stats["transfers"] += 1
        stocked = sorted(k for k, n in self.available.items() if n >= 2)
        if rng.random() < 0.1 and stocked:
            sku, code = rng.choice(stocked)
            change, reason = (
                (-1, "damaged in the warehouse") if rng.random() < 0.75 else (1, "found in a cycle count")
            )
            inventory.adjust(
                self.db,
                self.tid,
                self.manager,
                key=self.key("adjust", day),
                at=at,
                sku=sku,
                warehouse=code,
                change=change,
                reason=reason,
            )
            self.available[sku, code] += change
            self.stats["adjustments"] += 1

    def on_delivery(self, at: datetime, payload: tuple[str, int, int]) -> None:
        sku, quantity, po = payload
        for code, share in zip(self.codes, WAREHOUSE_SHARE, strict=True):
            self._receive(sku, code, max(1, round(quantity * share)), self.key("po", po, sku, code), at)
        self.pending_po.discard(sku)
        self.stats["restocks"] += 1

    # Orders

    def on_place(self, at: datetime, o: _Order) -> None:
        shop, rng = self.shop, self.rng
        actor = self.clerk if o.channel in ("pos", "phone") else self.storefront
        self.placed += 1
        if self.placed % 25 == 0:
            self.progress(shop.key, self.placed, self.n_orders, "orders")
        try:
            r = orders.place_order(
                self.db,
                self.tid,
                actor,
                customer_id=o.customer_id,
                lines=o.lines,
                channel=o.channel,
                shipping_fee=o.fee,
                key=self.key("order", o.index),
                at=at,
            )
        except OutOfStock as exc:
            o.number, o.status = exc.number, "rejected"
            return
        o.oid, o.number, o.status, o.allocations = r["order_id"], r["number"], r["status"], r["allocations"]
        for a in o.allocations:
            self.available[a["sku"], a["warehouse"]] -= a["quantity"]
        minutes = shop.reservation_minutes
        if o.channel == "pos":
            self.push(at + timedelta(minutes=rng.uniform(0.5, 3)), "pay", o)
            return
        fate = rng.random()
        if fate < P_EXPIRE:
            self.push(at + timedelta(minutes=minutes + rng.uniform(1, 120)), "expire", o)
        elif fate < P_EXPIRE + P_CANCEL_UNPAID:
            self.push(at + timedelta(minutes=rng.uniform(1, minutes - 1)), "cancel", o)
        else:
            self.push(at + timedelta(minutes=rng.uniform(0.5, min(15, minutes - 2))), "pay", o)

    def on_pay(self, at: datetime, o: _Order) -> None:
        rng = self.rng
        if o.channel == "pos":
            method = rng.choice(("card", "card", "cash"))
        elif o.channel == "marketplace":
            method = "marketplace"
        else:
            method = rng.choice(("card", "card", "card", "paypal"))
        reference = f"{method}_{rng.getrandbits(48):012x}"
        actor = self.clerk if o.channel in ("pos", "phone") else self.storefront
        r = orders.pay_order(
            self.db,
            self.tid,
            actor,
            o.oid,
            method=method,
            reference=reference,
            key=self.key("order", o.index, "pay"),
            at=at,
        )
        o.status = r["status"]
        o.to_ship = sorted({a["warehouse"] for a in o.allocations})
        if o.channel == "pos":  # handed over at the counter
            self.push(at + timedelta(minutes=1), "ship", o)
        elif rng.random() < P_CANCEL_PAID:
            self.push(at + timedelta(hours=rng.uniform(0.3, 6)), "cancel", o)
        else:
            delay = rng.uniform(2, 30) + (rng.uniform(0, 24) if season(at.date(), self.shop) > 2 else 0)
            self.push(self.working_hours(at + timedelta(hours=delay)), "ship", o)

    def on_ship(self, at: datetime, o: _Order) -> None:
        rng = self.rng
        code = o.to_ship.pop(0)
        if o.channel == "pos":
            carrier, tracking = "In store", f"POS-{o.number}"
        else:
            carrier = rng.choice(self.shop.carriers)
            tracking = f"{carrier[:2].upper()}{rng.randrange(10**11, 10**12)}"
        r = orders.ship_order(
            self.db,
            self.tid,
            self.clerk,
            o.oid,
            carrier=carrier,
            tracking=tracking,
            warehouse=code,
            key=self.key("order", o.index, "ship", code),
            at=at,
        )
        o.status = r["status"]
        if r["status"] == "shipped":
            o.to_ship = []
        if o.to_ship:
            self.push(self.working_hours(at + timedelta(hours=rng.uniform(1, 20))), "ship", o)
        elif o.channel == "pos":
            self.push(at + timedelta(minutes=1), "deliver", o)
        else:
            days = rng.uniform(1, 5)
            arrive = (at + timedelta(days=days)).astimezone(self.zone).date()
            self.push(self.local(arrive, rng.uniform(9, 19)), "deliver", o)

    def on_deliver(self, at: datetime, o: _Order) -> None:
        r = orders.deliver_order(
            self.db, self.tid, self.clerk, o.oid, key=self.key("order", o.index, "deliver"), at=at
        )
        o.status = r["status"]
        if self.rng.random() < self.shop.return_rate:
            self.push(at + timedelta(days=self.rng.uniform(2, 25)), "return", o)

    def on_return(self, at: datetime, o: _Order) -> None:
        rng = self.rng
        left = {
            n: q - o.returned.get(n, 0) for n, (_, q) in enumerate(o.lines, 1) if q - o.returned.get(n, 0) > 0
        }
        if rng.random() < 0.45 and o.returns == 0:
            items = left
        else:
            line_no = rng.choice(sorted(left))
            items = {line_no: rng.randint(1, left[line_no])}
        shipped_from = sorted({a["warehouse"] for a in o.allocations})
        code = self.codes[0] if rng.random() < 0.7 else rng.choice(shipped_from)
        o.returns += 1
        r = orders.return_items(
            self.db,
            self.tid,
            self.clerk,
            o.oid,
            items=items,
            warehouse=code,
            key=self.key("order", o.index, "return", o.returns),
            at=at,
        )
        o.status = r["status"]
        for n, q in items.items():
            o.returned[n] = o.returned.get(n, 0) + q
            sku = o.lines[n - 1][0]
            self.available[sku, code] = self.available.get((sku, code), 0) + q
        if o.status == "partially_refunded" and rng.random() < 0.2:
            self.push(at + timedelta(days=rng.uniform(1, 10)), "return", o)

    def on_cancel(self, at: datetime, o: _Order) -> None:
        reasons = CANCEL_REASONS_PAID if o.status == "paid" else CANCEL_REASONS_UNPAID
        r = orders.cancel_order(
            self.db,
            self.tid,
            self.clerk,
            o.oid,
            reason=self.rng.choice(reasons),
            key=self.key("order", o.index, "cancel"),
            at=at,
        )
        o.status = r["status"]
        self._release(o)

    def on_expire(self, at: datetime, o: _Order) -> None:
        # What the worker does when a reservation runs out: the same command, as the system.
        r = orders.expire_order(
            self.db, self.tid, SYSTEM, o.oid, now=at, key=self.key("order", o.index, "expire")
        )
        o.status = r["status"]
        self._release(o)


class _Stopped(Exception):
    """Another shop failed or the run was interrupted: stop this one too."""


def demo_slugs(prefix: str = DEFAULT_PREFIX) -> list[str]:
    return [f"{prefix}-{shop.key}" for shop in SHOPS]


def seed_demo(
    db: Database,
    *,
    orders: int = DEFAULT_ORDERS,
    seed: int = DEFAULT_SEED,
    prefix: str = DEFAULT_PREFIX,
    end: datetime | None = None,
    progress: Progress | None = None,
    workers: int = 3,
) -> dict[str, Any]:
    """Create the demo shops that do not exist yet (slugs PREFIX-electronics, -fashion, -books) and play
    their history; `orders` is the total over the three shops. Shops that exist are left as they are."""
    if not isinstance(orders, int) or not len(SHOPS) <= orders <= MAX_ORDERS:
        raise ValidationError(f"--orders must be between {len(SHOPS)} and {MAX_ORDERS}")
    if not isinstance(prefix, str) or not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,40}", prefix):
        raise ValidationError("the prefix must be lowercase letters, digits and '-', at most 41 characters")
    end = (end or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    started = time.monotonic()
    existing = {t.slug for t in tenants.list_tenants(db)}
    counts = _split(orders, [s.share for s in SHOPS])
    runs: list[_ShopRun] = []
    skipped = []
    stop = threading.Event()
    for shop, n in zip(SHOPS, counts, strict=True):
        slug = f"{prefix}-{shop.key}"
        if slug in existing:
            skipped.append(slug)
            continue
        tenant = tenants.create_tenant(
            db, shop.name, slug=slug, currency=shop.currency, time_zone=shop.time_zone, actor="demo"
        )
        runs.append(_ShopRun(db, tenant, shop, orders=n, seed=seed, end=end, progress=progress, stop=stop))
    # The shops are independent, so they are played side by side; each one stays deterministic.
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        try:
            created = list(pool.map(lambda r: r.run(), runs))
        except BaseException:
            stop.set()  # Ctrl-C or a failure: the other shops stop at their next step
            raise
    return {
        "created": created,
        "existing": skipped,
        "seed": seed,
        "orders": orders,
        "seconds": round(time.monotonic() - started, 1),
    }


def _split(total: int, shares: list[float]) -> list[int]:
    counts = [max(1, math.floor(total * s)) for s in shares]
    counts[0] += total - sum(counts)
    return counts


# Presentation, shared by `oms demo` and `oms up`.


def seed_with_progress(db: Database, console: Any = None, **kwargs: Any) -> dict[str, Any]:
    """seed_demo with a rich progress bar per shop."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    lock = threading.Lock()
    with Progress(
        TextColumn("{task.description:<34}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        tasks: dict[str, Any] = {}

        def report(shop: str, done: int, total: int, stage: str) -> None:
            with lock:
                if shop not in tasks:
                    tasks[shop] = bar.add_task(shop, total=total)
                bar.update(tasks[shop], completed=done, total=total, description=f"{shop}: {stage}")

        return seed_demo(db, progress=report, **kwargs)


def print_summary(result: dict[str, Any], console: Any = None) -> None:
    """The demo shops, what they hold, and the logins (their passwords are shown only this once)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    for slug in result["existing"]:
        console.print(f"demo tenant {slug} already exists: left as it is")
    if not result["created"]:
        console.print("nothing to do")
        return
    logins = Table(title="Demo logins for the app (passwords are shown only now)")
    for col in ("sign in as", "role", "password"):
        logins.add_column(col)
    for shop in result["created"]:
        statuses = ", ".join(f"{k} {v}" for k, v in shop["statuses"].items())
        console.print(
            f"created {shop['slug']} ({shop['name']}, {shop['currency']}): {shop['products']} products,"
            f" {shop['warehouses']} warehouses, {shop['customers']} customers, {shop['orders']} orders"
            f" ({statuses})",
            highlight=False,
            markup=False,
        )
        for u in shop["users"]:
            logins.add_row(f"{u['username']}@{shop['slug']}", u["role"], u["password"])
    console.print(logins)
    console.print(f"seeded in {result['seconds']} s")


def seed_if_empty(url: str) -> dict[str, Any] | None:
    """On a first start (no tenant at all), seed the demo through the serving role and print its logins."""
    db = Database(url, application_name="oms-demo", max_size=4)
    try:
        if tenants.list_tenants(db):
            return None
        print("First start: creating the demo shops (oms demo)...", flush=True)
        result = seed_with_progress(db)
        print_summary(result)
        return result
    finally:
        db.close()
