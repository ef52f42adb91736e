"""Console actions that destroy something or change credentials act only once confirmed.

Without scripts, the first POST answers a page asking "Really …?" whose Confirm button posts the
same fields again with ``confirm=yes`` (and the page's CSRF token); with scripts,
static/confirm.js asks in a ``<dialog>`` and adds ``confirm=yes`` itself. Only a POST carrying
it acts (docs/shell.md, "Confirmations").
"""

from flask import Response, render_template, request

FIELD = "confirm"
YES = "yes"

# What a plugin page's destructive buttons ask first: action -> (button, question).
QUESTIONS = {
    "disable": ("Disable", "Really disable {name}? Its menus hide; its storage turns read-only."),
    "deregister": ("Remove", "Really remove {name}? Each tenant's uninstall policy applies."),
    "approve": ("Approve", "Really approve {name}'s move? Its requests go to its new server."),
    "reject": ("Reject", "Really reject {name}'s pending update?"),
    "purge": ("Set purge", "Really purge {name}'s data in {tenant} when it is removed?"),
    "rotate": ("Rotate token", "Really rotate {name}'s token? The old token {old}."),
    "restrict": ("Restrict", "Really make {name} available only to {tenants}? The others lose it."),
}


def confirmed() -> bool:
    return request.form.get(FIELD) == YES


def ask(question: str, *, button: str, cancel: str) -> Response | None:
    """Return the confirmation page for this POST, or None when it is confirmed already.

    The page carries the form's other fields along; it is not stored (a password being reset
    may be one of them).
    """
    if confirmed():
        return None
    fields = [(k, v) for k, v in request.form.items(multi=True) if k not in (FIELD, "csrf_token")]
    body = render_template(
        "console/confirm.html",
        question=question,
        button=button,
        cancel=cancel,
        fields=fields,
        action=request.path,
    )
    return Response(body, 200, headers={"Cache-Control": "no-store"})


def ask_about(action: str, name: str, *, cancel: str, **words: str) -> Response | None:
    """``ask`` the question ``QUESTIONS`` holds for ``action`` on the plugin called ``name``."""
    button, question = QUESTIONS[action]
    return ask(question.format(name=name, **words), button=button, cancel=cancel)
