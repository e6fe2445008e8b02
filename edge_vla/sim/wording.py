"""Word pools for the simulator: labels, synonyms, instructions, filler text.

Variety here is what keeps a model trained on the simulator from learning one
wording; every pool is sampled through the task's seeded rng.
"""

from __future__ import annotations

APP_NAMES = (
    "Acme Portal", "Northwind", "Finlytics", "CloudDesk", "Orbit CRM", "Helix", "Pinecrest Bank",
    "TradeView", "Lumen HR", "Quarry", "Bluebird Mail", "Vantage", "Mosaic", "Tally", "Harbor",
)
NAV = ("Home", "Dashboard", "Reports", "Settings", "Help", "Account", "Projects", "Inbox",
       "Billing", "Team", "Docs", "Analytics")

# Groups of look-alike labels for different actions: the target comes from one group and
# its siblings become distractors, so reading the label is required.
BUTTON_GROUPS = (
    ("Submit", "Submit all", "Resubmit", "Submit later"),
    ("Save", "Save draft", "Save as", "Save & close"),
    ("Delete", "Delete all", "Undo delete", "Delete draft"),
    ("Export", "Export CSV", "Export PDF", "Import"),
    ("Sign in", "Sign up", "Sign out", "Sign in with SSO"),
    ("Next", "Next page", "Previous", "Skip"),
    ("Upload", "Upload file", "Download", "Upload folder"),
    ("Share", "Share link", "Unshare", "Share file"),
    ("Approve", "Approve all", "Disapprove", "Reject"),
    ("Open", "Open in new tab", "Reopen", "Open folder"),
    ("Refresh", "Refresh all", "Reset", "Reload"),
    ("Add", "Add item", "Add to cart", "Add note"),
    ("Archive", "Archive all", "Unarchive", "View archive"),
    ("Print", "Print preview", "Print all", "Page setup"),
)
OTHER_BUTTONS = ("Cancel", "Back", "Help", "Close", "Edit", "Details", "More", "Copy", "Filter",
                 "Sort", "Search", "Apply", "Settings", "Preview")

SUBMIT_WORDS = ("Submit", "Send", "Confirm", "Save", "Continue", "Apply", "Done", "Register")
BUY_WORDS = ("Buy", "Buy now", "Buy", "Purchase", "Long")
SELL_WORDS = {"Buy": "Sell", "Buy now": "Sell now", "Purchase": "Sell", "Long": "Short"}

CLICK_TEMPLATES = (
    "Click {x}", "Click {x}", "Press the {x} button", "Tap {x}", "Click the button labelled {x}",
    "Select {x}", "Hit {x}", "Click on \"{x}\"", "Press {x}",
)

# (label, placeholder, values): values chosen to be typeable and plausible.
FIELDS = (
    ("Name", "Your name", ("Alice Moreau", "Jonas Berg", "Priya Nair", "Tom Okafor", "Mei Chen")),
    ("Email", "you@example.com", ("alice@example.com", "jb@mail.net", "priya.n@corp.io", "tom@okafor.dev")),
    ("City", "e.g. Berlin", ("Berlin", "Lisbon", "Osaka", "Toronto", "Nairobi", "Lyon")),
    ("Phone", "+1 555 0100", ("+1 555 0134", "+44 20 7946 0018", "030 1234567", "555-0199")),
    ("Company", "Company name", ("Initech", "Globex", "Umbrella Ltd", "Hooli", "Stark Industries")),
    ("Username", "Choose a username", ("alice_m", "jberg", "priya42", "tokafor", "mchen")),
    ("Coupon code", "Enter code", ("SAVE10", "WELCOME5", "SPRING24", "FREESHIP")),
    ("Zip code", "Postal code", ("10115", "94103", "SW1A 1AA", "75008", "2000")),
    ("Title", "Short title", ("Quarterly report", "Team offsite", "Bug triage", "Invoice 2291")),
    ("Amount", "0.00", ("25", "120.50", "9.99", "1000")),
)

FILL_TEMPLATES = (
    "Type '{v}' into {f}, then click {s}",
    "Enter {v} in the {f} field and press {s}",
    "Fill {f} with \"{v}\" and click {s}",
    "Set {f} to {v}, then {s}",
    "Write {v} in {f} and submit with {s}",
)
WAIT_TEMPLATES = (
    "Click {s} the moment the validation error disappears",
    "Wait until the error message is gone, then click {s}",
    "As soon as the warning clears, press {s}",
    "Click {s} once the error has disappeared",
)
ERROR_TEXTS = (
    "Please wait, verifying your details...", "Session check in progress", "Invalid token, retrying...",
    "Server busy, try again shortly", "Validating form...", "Connection lost. Reconnecting...",
    "Please correct the highlighted fields",
)
BUY_TEMPLATES = (
    "Dismiss the pop-up, then {b}", "Close the dialog and click {b}", "Get rid of the pop-up and press {b}",
    "Dismiss the pop-up, then click {b}", "Close the popup, then {b} {t}",
)
POPUP_TITLES = (
    ("Limited offer!", "Upgrade to Pro today and save 30% on your first year."),
    ("Market update", "Volatility is high. Trading may be paused at short notice."),
    ("Welcome back!", "We have redesigned the dashboard. Take a quick tour?"),
    ("Rate our app", "Enjoying the app? Leave us a review, it only takes a minute."),
    ("Cookies", "We use cookies to improve your experience on this site."),
    ("Newsletter", "Get the latest news and tips straight to your inbox."),
    ("Risk disclosure", "Trading involves risk. Past performance is no guarantee of future results."),
    ("New feature", "Dark mode is now available in your settings."),
)
POPUP_DISMISS = ("Got it", "Not now", "Dismiss", "Maybe later", "No thanks", "OK")
POPUP_PRIMARY = ("Learn more", "Upgrade", "Take the tour", "Subscribe", "Accept all", "Rate now")
TICKERS = ("ACME", "GLBX", "INTC", "NRTH", "ORBT", "HLX", "VNTG", "QRY", "BTC-USD", "EUR/USD")

LIST_TITLES = {
    "Invoices": ("Invoices", "Billing history", "Accounts payable"),
    "Files": ("All files", "Documents", "Shared with me", "Recent files"),
    "Contacts": ("Contacts", "Customers", "Team members", "Address book"),
    "Products": ("Catalog", "Products", "Inventory", "Shop"),
    "Orders": ("Order history", "Orders", "Shipments"),
    "Tickets": ("Support queue", "Tickets", "Open issues", "Help desk"),
}
LIST_KINDS = tuple(LIST_TITLES)
FIRST = ("Ada", "Ben", "Carla", "Dev", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jamal", "Kira",
         "Liam", "Mara", "Nico", "Olga", "Pablo", "Quinn", "Rosa", "Sami", "Tara", "Uma", "Viktor")
LAST = ("Adams", "Berg", "Costa", "Diaz", "Evans", "Fischer", "Gupta", "Hall", "Ito", "Jensen",
        "Klein", "Lopez", "Meyer", "Novak", "Ortiz", "Park", "Reyes", "Silva", "Tanaka", "Weber")
ADJ = ("Classic", "Smart", "Compact", "Deluxe", "Eco", "Ultra", "Mini", "Pro", "Wireless", "Vintage")
NOUN = ("Lamp", "Kettle", "Backpack", "Headphones", "Desk", "Chair", "Mug", "Watch", "Speaker",
        "Notebook", "Monitor", "Blender", "Jacket", "Camera")
FILE_WORDS = ("report", "budget", "notes", "invoice", "draft", "summary", "plan", "photo", "export")
FILE_EXT = ("pdf", "xlsx", "docx", "png", "csv", "txt", "pptx")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
SCROLL_TEMPLATES = (
    "Scroll to '{x}' and click it", "Open {x} from the list", "Find {x} in the list and select it",
    "Scroll down and click {x}", "Select the entry {x}",
)

CHECK_LABELS = (
    "Email notifications", "Dark mode", "Remember me", "Auto-save", "Two-factor authentication",
    "Share usage data", "I agree to the terms", "Subscribe to newsletter", "Show previews",
    "Sync contacts", "Location access", "Sound effects", "Compact view", "Weekly summary",
    "Public profile", "Desktop alerts",
)
TICK_TEMPLATES = ("Tick '{x}'", "Check the box next to {x}", "Enable {x}", "Turn on {x}", "Select {x}")
UNTICK_TEMPLATES = ("Untick '{x}'", "Uncheck {x}", "Disable {x}", "Turn off {x}", "Clear the {x} box")

TITLES = {
    "click_button": ("Documents", "Project overview", "Order #4417", "Review changes", "Workspace",
                     "Quarterly report", "Pending approvals"),
    "fill_and_submit": ("Contact details", "Create account", "Shipping address", "New entry",
                        "Your profile", "Checkout"),
    "wait_then_submit": ("Confirm payment", "Verify account", "Complete order", "Final step",
                         "Review and send"),
    "checkbox": ("Preferences", "Notification settings", "Privacy", "Account settings", "Options"),
}
FORM_PARAGRAPHS = ("Fields marked with * are required.", "We never share your details with third parties.")
PARAGRAPHS = (
    "Review the information below before you continue.",
    "Changes are saved to your workspace and synced across devices.",
    "You can change these settings at any time.",
    "Select an action to apply to the current selection.",
    "Last updated 3 minutes ago by the system.",
)
DETAIL_KEYS = (
    ("Owner", ("Ada Berg", "Ben Costa", "Hiro Ito", "Rosa Silva")),
    ("Status", ("Pending", "Approved", "Draft", "In review")),
    ("Created", ("Mar 3, 2024", "Jan 12, 2025", "Yesterday", "2 hours ago")),
    ("Size", ("1.2 MB", "340 KB", "18 items")),
    ("Priority", ("Low", "Normal", "High")), ("Due", ("Friday", "Next week", "Jun 30")),
    ("Reference", ("#A-2291", "#B-1043", "#Q-77")), ("Team", ("Design", "Finance", "Support", "Platform")),
)
