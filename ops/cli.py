"""Command line: `python -m bot <command>`. Operator messages are in Spanish."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import getpass
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import sqlalchemy as sa
import yaml
from telegram.error import TelegramError

from bot import confusions, evaluation, report, retention
from bot.database import engine_for
from bot.dialogue import Responder
from bot.handoff import HandoffError, HandoffStore
from bot.knowledge import ContentError, KnowledgeBase, LiveKnowledgeBase
from bot.office_hours import OfficeHours
from bot.privacy import hash_id, redact
from bot.services import handoff_desk
from bot.settings import CONTENT_DIR, NLU_DIR, PROJECT_ROOT, TELEGRAM_WEBHOOK_PATH, Settings
from bot.text import plain
from bot.vocabulary import LiveVocabulary
from integrations import redis_keys
from integrations import telegram as telegram_api
from ops import runner

HELD_OUT_DIR = PROJECT_ROOT / "tests"
EVAL_TARGETS = {
    "intent_accuracy": 0.97,
    "intent_macro_f1": 0.93,
    "country_f1": 0.95,
    "entry_top1": 0.90,
    "follow_up_accuracy": 0.90,
    "destination_accuracy": 0.90,
}


def cmd_content_check(settings: Settings, args: argparse.Namespace) -> int:
    try:
        kb = KnowledgeBase.load(settings.content_dir)
    except ContentError as error:
        print(f"El contenido tiene {len(error.problems)} problema(s):", file=sys.stderr)
        for problem in error.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(f"Contenido correcto: {len(kb.entries)} respuestas, {len(list(kb.countries))} países.")
    if args.stale is not None:
        return _list_stale(kb, args.stale, args.today or dt.date.today())
    if args.confusions is not None:
        return _list_confusions(kb, args.confusions)
    generated = runner.COUNTRY_NLU_FILE
    if settings.content_dir == CONTENT_DIR and runner.country_nlu_yaml(kb.countries) != _read(generated):
        print("data/nlu/countries.yml está desactualizado: ejecute `python -m bot gen-countries`.", file=sys.stderr)
        return 1
    return 0


def _list_stale(kb: KnowledgeBase, days: int, today: dt.date) -> int:
    """What the editors should re-check: items reviewed more than `days` ago, oldest first."""
    items = [(e.reviewed, e.file, e.id) for e in kb.entries.values()]
    items += [(c.reviewed, "countries.yml", c.name) for c in kb.countries]
    stale = sorted(item for item in items if (today - item[0]).days > days)
    print(f"{len(stale)} ítem(s) revisados hace más de {days} días (al {today.isoformat()}):")
    for reviewed, file, name in stale:
        print(f"  {reviewed.isoformat()}  {file}: {name}")
    return 0


def _list_confusions(kb: KnowledgeBase, worst: int) -> int:
    """What the editors should tell apart: each question, left out, ranked against the rest of the content."""
    result = confusions.check(kb)
    share = f"{result.accuracy * 100:.1f} %".replace(".", ",")
    print(
        f"Sin cada pregunta, el asistente la contesta con su propia respuesta en {result.correct} de "
        f"{result.questions} casos ({share})."
    )
    pairs = result.pairs(worst)
    if not pairs:
        print("Ninguna pregunta se confunde con otra respuesta.")
        return 0
    print("Preguntas que el asistente confunde (deje fuera cada pregunta y vea qué respuesta gana):")
    for pair in pairs:
        print(f"  {pair.expected} → {pair.ranked_first} ({pair.count} de {pair.asked}): «{pair.example}»")
    return 0


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.exists() else None


def cmd_gen_countries(settings: Settings, args: argparse.Namespace) -> int:
    changed = runner.generate_country_nlu(settings)
    print("data/nlu/countries.yml " + ("actualizado." if changed else "ya estaba al día."))
    return 0


def cmd_train(settings: Settings, args: argparse.Namespace) -> int:
    print(f"Modelo: {runner.train(settings, force=args.force)}")
    return 0


def cmd_eval(settings: Settings, args: argparse.Namespace) -> int:
    """Held-out figures: intents (against the simple peer), entries, follow-ups, destinations, sources."""
    reports = PROJECT_ROOT / "reports"
    figures = runner.evaluate(settings, reports)
    train, held_out = (
        evaluation.nlu_examples(sorted(NLU_DIR.glob("*.yml"))),
        evaluation.nlu_examples([runner.HELD_OUT_NLU]),
    )
    for peer in evaluation.PEERS:
        figures[f"{peer}_accuracy"] = evaluation.peer_accuracy(train, held_out, peer)
    kb = KnowledgeBase.load(settings.content_dir)
    responder = Responder(
        kb, LiveVocabulary(sorted(NLU_DIR.glob("*.yml")), LiveKnowledgeBase(settings.content_dir)).current()
    )
    with runner.parsing_server(settings, runner.latest_model()) as parse:
        play = evaluation.ConversationRunner(responder, parse).play
        outcomes = {
            name: [o for conversation in conversations for o in play(conversation)]
            for name, conversations in (
                ("entries", evaluation.load_entry_questions(HELD_OUT_DIR / "nlu" / "entries.yml")),
                ("follow_ups", evaluation.load_conversations(HELD_OUT_DIR / "stories" / "conversations.yml")),
                ("destinations", evaluation.load_conversations(HELD_OUT_DIR / "stories" / "destinations.yml")),
            )
        }
    figures["entry_top1"] = evaluation.accuracy(outcomes["entries"])
    figures["follow_up_accuracy"] = evaluation.accuracy(outcomes["follow_ups"], first_turns=False)
    figures["destination_accuracy"] = evaluation.accuracy(outcomes["destinations"])
    misses = [o for found in outcomes.values() for o in found if not o.ok]
    (reports / "dialogue_misses.txt").write_text(
        "".join(f"{o.conversation} [{o.turn}] «{o.said}»: expected {o.expected}, got {o.got}\n" for o in misses),
        encoding="utf-8",
    )
    print(f"\nEvaluación sobre los conjuntos reservados (tests/nlu, tests/stories); informes en {reports}/:")
    for name, value in figures.items():
        target = EVAL_TARGETS.get(name)
        verdict = "" if target is None else f"  (meta ≥ {target:.2f}: {'cumple' if value >= target else 'NO cumple'})"
        print(f"  {name:26} {value:.3f}{verdict}")
    for peer in evaluation.PEERS:
        print(f"  {'DIET menos ' + peer:26} {figures['intent_accuracy'] - figures[peer + '_accuracy']:+.3f}")
    sources = evaluation.source_figures(kb, dt.date.today())
    print(
        f"\nFuentes: {sources['items']} ítems; con fuente primaria {sources['primary']}, marcados verify "
        f"{sources['flagged']}, sin ninguna de las dos {sources['neither']} (meta 0); dominios sin página "
        f"{sources['bare_domains']} (meta 0)."
    )
    print(f"Fallos de diálogo ({len(misses)}): {reports / 'dialogue_misses.txt'}")
    return 0


def cmd_advisors_add(settings: Settings, args: argparse.Namespace) -> int:
    """Create an advisor account; the password is asked for, or read from standard input."""
    if sys.stdin.isatty():
        password = getpass.getpass("Contraseña (mínimo 10 caracteres): ")
        if password != getpass.getpass("Repita la contraseña: "):
            print("Las contraseñas no coinciden.", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\n")
    try:
        handoff_desk().store.add_advisor(args.username, password, args.name)
        if args.supervisor:
            handoff_desk().store.set_supervisor(args.username)
    except HandoffError as error:
        print(f"No se creó la cuenta: {error}", file=sys.stderr)
        return 1
    role = " con rol de supervisor (panel de indicadores)" if args.supervisor else ""
    print(f"Cuenta de asesor '{args.username}' creada{role}.")
    return 0


def cmd_advisors_promote(settings: Settings, args: argparse.Namespace) -> int:
    """Grant (or, with --revoke, take away) the supervisor role: the dashboard and answer reviews."""
    store = handoff_desk().store
    try:
        store.set_supervisor(args.username, not args.revoke)
    except HandoffError as error:
        print(f"No se cambió el rol: {error}", file=sys.stderr)
        return 1
    store.audit(None, "supervisor_revoked" if args.revoke else "supervisor_granted", None, args.username[:64])
    if args.revoke:
        print(f"'{args.username}' ya no es supervisor.")
    else:
        print(f"'{args.username}' es supervisor: puede abrir el panel /advisor/dashboard/.")
    return 0


def _titles(settings: Settings) -> dict[str, str]:
    """Topic titles for the report; the bare topic names if the content does not load."""
    try:
        return dict(KnowledgeBase.load(settings.content_dir).titles)
    except ContentError:
        return {}


def cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    """The SOM's figures for a period (Lima days), printed and optionally written as CSV."""
    hours = OfficeHours.load(settings.office_hours_file)
    now = args.now or dt.datetime.now(dt.timezone.utc)
    try:
        span = report.period(args.since, args.until, now, hours)
    except report.PeriodError as error:
        print(f"Periodo inválido: {error}.", file=sys.stderr)
        return 2
    store = HandoffStore(settings.handoff_database_url)
    trackers = engine_for(settings.tracker_database_url)
    try:
        figures = report.figures(store, trackers, hours, span, now)
    except sa.exc.SQLAlchemyError as error:
        print(f"No se pudo leer los datos: la base de datos no respondió ({type(error).__name__}).", file=sys.stderr)
        return 1
    finally:
        trackers.dispose()
        store.engine.dispose()
    titles = _titles(settings)
    print(report.text_report(figures, titles), end="")
    if args.csv:
        Path(args.csv).write_text(report.csv_text(figures, titles), encoding="utf-8")
        print(f"CSV escrito en {args.csv}")
    return 0


def cmd_advisors_revoke(settings: Settings, args: argparse.Namespace) -> int:
    """Sign an advisor out everywhere at once: every session token stops working."""
    try:
        ended = handoff_desk().revoke(args.username)
    except HandoffError as error:
        print(f"No se revocó: {error}", file=sys.stderr)
        return 1
    print(f"Sesiones de '{args.username}' cerradas: {ended}.")
    return 0


def _telegram_settings_missing(settings: Settings, *extra: str) -> bool:
    missing = settings.missing(["TELEGRAM_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET", *extra])
    if missing:
        print(f"Faltan variables de entorno: {', '.join(missing)} (vea el README).", file=sys.stderr)
    return bool(missing)


def cmd_review_export(settings: Settings, args: argparse.Namespace) -> int:
    """The supervisors' reviews as material for the editors: NLU examples (data/nlu format) for the
    intent of the entry that should have answered, and questions to add to that entry. Numbers and
    e-mail addresses in what people wrote are masked."""
    reviews = HandoffStore(settings.handoff_database_url).reviews()
    kb = KnowledgeBase.load(settings.content_dir)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    by_intent: dict[str, list[str]] = {}
    by_entry: dict[str, dict] = {}
    skipped = 0
    for review in reviews:
        entry = kb.entries.get(review["expected_entry"])
        if entry is None:  # removed from the content since
            skipped += 1
            continue
        said = " ".join(redact(review["person_text"]).split())
        intent = entry.intent or entry.topic
        if intent and said not in by_intent.setdefault(intent, []):
            by_intent[intent].append(said)
        item = by_entry.setdefault(entry.id, {"id": entry.id, "title": entry.title, "file": entry.file,
                                              "questions": [], "reviews": []})  # fmt: skip
        if said not in item["questions"]:
            item["questions"].append(said)
        item["reviews"].append({
            "assistant_answered": " ".join(redact(review["assistant_text"]).split()),
            "comment": review["comment"], "supervisor": review["supervisor"], "at": review["created_at"],
        })  # fmt: skip
    nlu = "# Ejemplos de las revisiones de supervisores (python -m bot review export): revíselos antes de\n"
    nlu += '# copiarlos a data/nlu/ y reentrenar.\nversion: "3.1"\n\nnlu:\n'
    for intent, examples in sorted(by_intent.items()):
        nlu += f"\n- intent: {intent}\n  examples: |\n" + "".join(f"    - {text}\n" for text in examples)
    (out / "nlu_reviews.yml").write_text(nlu, encoding="utf-8")
    entries = {"entries": sorted(by_entry.values(), key=lambda item: item["id"])}
    (out / "entry_questions.yml").write_text(
        "# Preguntas que debieron llevar a cada respuesta: agréguelas a `questions` en data/content/.\n"
        + yaml.safe_dump(entries, allow_unicode=True, sort_keys=False, width=120),
        encoding="utf-8",
    )
    print(f"{len(reviews) - skipped} revisión(es) exportada(s) a {out}/: nlu_reviews.yml (ejemplos para data/nlu/) "
          "y entry_questions.yml (preguntas para data/content/).")  # fmt: skip
    if skipped:
        print(f"{skipped} revisión(es) nombran respuestas que ya no existen: se omitieron.", file=sys.stderr)
    return 0


def cmd_telegram_set_webhook(settings: Settings, args: argparse.Namespace) -> int:
    """Tell Telegram where to post updates, with the secret our channel checks."""
    if _telegram_settings_missing(settings, "PUBLIC_URL"):
        return 1
    try:
        url = asyncio.run(telegram_api.set_webhook(settings))
    except TelegramError as error:
        print(f"Telegram no aceptó el webhook: {error}", file=sys.stderr)
        return 1
    print(f"Webhook de Telegram registrado: {url}")
    return 0


def cmd_telegram_poll(settings: Settings, args: argparse.Namespace) -> int:
    """Development without a public URL: bring updates from Telegram to the local webhook."""
    if _telegram_settings_missing(settings):
        return 1
    url = args.url or f"http://127.0.0.1:{settings.rasa_port}{TELEGRAM_WEBHOOK_PATH}"
    print(
        f"Recibiendo mensajes de Telegram y enviándolos a {url} (Ctrl-C para detener).\n"
        "Telegram no permite webhook y consulta a la vez: se quita el webhook; para volver a usarlo, "
        "ejecute `python -m bot telegram set-webhook`.",
        flush=True,
    )
    try:
        asyncio.run(telegram_api.poll(settings, url))
    except TelegramError as error:
        print(f"Telegram rechazó la consulta: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def cmd_cluster(settings: Settings, args: argparse.Namespace) -> int:
    """Two Rasa replicas and the action server on the production profile, behind nginx."""
    env = {**settings.env}
    env.setdefault("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/som")
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    settings = Settings.from_env(env)
    if not shutil.which("nginx"):
        raise runner.StartupError("falta nginx: instálelo con 'apt-get install nginx'.")
    runner.ensure_database(settings.database_url)
    replicas = dataclasses.replace(settings, rasa_port=settings.rasa_port + 1)
    stack = runner.Stack(replicas, runner.train(settings), replicas=2)
    if runner.port_in_use(settings.rasa_port):
        raise runner.StartupError(f"El puerto {settings.rasa_port} ya está en uso.")

    def start() -> str:
        stack.start()
        nginx_dir = settings.var_dir / "nginx"
        nginx_dir.mkdir(parents=True, exist_ok=True)
        (nginx_dir / "nginx.conf").write_text(runner.nginx_config(settings, stack.rasa_ports))
        stack.processes["nginx"] = subprocess.Popen(
            ["nginx", "-c", str(nginx_dir / "nginx.conf"), "-g", "daemon off;"], start_new_session=True
        )
        return (
            f"\nGrupo listo: nginx en http://127.0.0.1:{settings.rasa_port} → réplicas "
            f"{', '.join(stack.rasa_urls)}\n  Base de datos: {settings.database_url}\n"
            f"  Redis: {settings.redis_url}\n  Detener: Ctrl-C\n"
        )

    return _serve_until_stopped(stack, start)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    """Run one server in the foreground (one process per container, see deploy/)."""
    stack = runner.Stack(settings, runner.train(settings))
    stack.prepare()
    command = stack.command_for("actions" if args.component == "actions" else "rasa-0")
    os.execvpe(command[0], command, runner.child_env(settings))
    return 0


def cmd_purge(settings: Settings, args: argparse.Namespace) -> int:
    """Delete what is past the retention period (the supervisor of `make run` also does it daily)."""
    days = settings.retention_days if args.older_than is None else args.older_than
    if args.older_than is None and days <= 0:
        print("La purga está desactivada (RETENTION_DAYS=0): no se borró nada.")
        return 0
    if days < 0:
        print("--older-than: indique 0 días o más.", file=sys.stderr)
        return 2
    try:
        report = retention.purge(settings, days, now=args.now, keys=redis_keys.conversation_keys(settings))
    except sa.exc.SQLAlchemyError as error:
        print(f"No se pudo purgar: la base de datos no respondió ({type(error).__name__}).", file=sys.stderr)
        return 1
    print(
        f"Purga de lo anterior a {days:g} días: {report.conversations} conversación(es), "
        f"{report.handoffs} derivación(es) cerrada(s) y {report.abandoned_handoffs} abandonada(s), "
        f"{report.audit_entries} registro(s) de auditoría, {report.sessions} sesión(es) de asesores vencida(s), "
        f"{report.reviews} revisión(es) de respuestas"
        + ("." if report.keys is None else f" y {report.keys} clave(s) en Redis.")
    )
    for problem in report.problems:
        print(f"No se pudo purgar {problem}: vuelva a ejecutar la purga.", file=sys.stderr)
    return 1 if report.problems else 0


def cmd_privacy_forget(settings: Settings, args: argparse.Namespace) -> int:
    """Erase one person's conversation from every store, after showing what there is (Ley 29733)."""
    conversation, keys = args.conversation, redis_keys.conversation_keys(settings)
    try:
        found = retention.personal_data(settings, conversation, keys)
        if found.empty and not found.problems:
            print(f"No hay datos de la conversación «{conversation}»: revise el identificador (p. ej. "
                  "whatsapp:+51987654321, telegram:123456789 o el del chat web). No se borró nada.")  # fmt: skip
            return 0
        print(f"Datos de la conversación «{conversation}»:")
        _print_personal_data(found, erased=False)
        if not args.yes and not _confirmed("¿Borrarlos de forma definitiva? Escriba «sí» para confirmar: "):
            print("No se borró nada.")
            return 1
        erased = retention.forget(settings, conversation, keys, now=args.now)
    except sa.exc.SQLAlchemyError as error:
        print(f"No se pudo borrar: la base de datos no respondió ({type(error).__name__}).", file=sys.stderr)
        return 1
    print("Se borró:")
    _print_personal_data(erased, erased=True)
    print("El borrado quedó registrado en la auditoría (cuántos datos, sin el identificador de la persona).")
    print(f"En los registros del servidor esta conversación figura como conversation={hash_id(conversation)} "
          "(sin el texto de los mensajes).")  # fmt: skip
    if settings.amqp_url:
        print("Los eventos ya publicados en RabbitMQ (AMQP_URL) no se borran desde aquí: caducan según el TTL "
              "de la cola (vea el README, «Registro y privacidad»).")  # fmt: skip
    for problem in erased.problems:
        print(f"No se pudo borrar en {problem}: vuelva a ejecutar el comando.", file=sys.stderr)
    return 1 if erased.problems else 0


def _print_personal_data(report: retention.ForgetReport, erased: bool) -> None:
    h = report.handoffs
    print(f"  - historial de la conversación (Rasa): {report.tracker_events} evento(s)")
    print(f"  - derivaciones a asesores: {h.handoffs}, con {h.messages} mensaje(s) y {h.notes} nota(s) internas")
    naming, kept = ("la nombraban", "se conservan") if erased else ("la nombran", "se conservarán")
    print(f"  - auditoría: {h.audit_entries} registro(s) que {naming} ({kept}: quién hizo qué y cuándo, sin decir "
          "de qué caso)")  # fmt: skip
    print(f"  - revisiones de respuestas que citan sus mensajes: {h.reviews}")
    if report.keys is not None:
        print(f"  - Redis: {report.keys} clave(s)")
    for problem in report.problems:
        print(f"  - sin acceso a {problem}", file=sys.stderr)


def _confirmed(question: str) -> bool:
    try:
        answer = input(question)
    except EOFError:
        return False
    return plain(answer) in ("si", "s", "yes")


def _moment(text: str) -> dt.datetime:
    """An ISO date and time; without a zone, UTC."""
    moment = dt.datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def _day(text: str) -> dt.date:
    """A date as YYYY-MM-DD, with the error in Spanish."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"«{text}» no es una fecha AAAA-MM-DD") from None


def _interrupt(signum, frame) -> None:
    """Ctrl-C and SIGTERM both stop the two servers cleanly (even when SIGINT was ignored)."""
    raise KeyboardInterrupt


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    stack = runner.Stack(settings, runner.train(settings))

    def start() -> str:
        stack.start()
        return (
            "\nEl asistente está listo.\n"
            f"  REST:  POST {stack.rasa_url}/webhooks/rest/webhook  "
            '{"sender": "prueba", "message": "hola"}\n'
            f"  Chat web (demostración):  {stack.rasa_url}/webchat/\n"
            f"  Consola de asesores:  {stack.rasa_url}/advisor/  (cuentas: make advisor NAME=usuario)\n"
            "  Detener: Ctrl-C\n"
        )

    return _serve_until_stopped(stack, start)


def _serve_until_stopped(stack: runner.Stack, start) -> int:
    """Run `start` (which returns the banner to print), then serve until a child exits or Ctrl-C."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    try:
        print(start(), flush=True)
        return stack.wait()
    except KeyboardInterrupt:
        print("\nDeteniendo…", flush=True)
        stack.stop()
        return 0


def cmd_shell(settings: Settings, args: argparse.Namespace) -> int:
    """Start the assistant in the background and talk to it over REST in this terminal."""
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.var_dir / "shell.log"
    with open(log_path, "a") as log:
        stack = runner.Stack(settings, runner.train(settings), log=log)
        print(f"Iniciando el asistente (registro en {log_path})…", flush=True)
        stack.start()
        try:
            _converse(f"{stack.rasa_url}/webhooks/rest/webhook", f"shell-{uuid.uuid4()}")
        except KeyboardInterrupt:
            pass
        finally:
            stack.stop()
    return 0


def _converse(url: str, sender: str) -> None:
    print("Escriba su mensaje (Ctrl-D para salir). Para pulsar un botón, escriba su número.")
    buttons: list[dict] = []
    for line in sys.stdin:
        text = line.strip()
        if text.isdigit() and 0 < int(text) <= len(buttons):
            text = buttons[int(text) - 1]["payload"]
        body = json.dumps({"sender": sender, "message": text}).encode()
        request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            buttons = []
            for message in json.load(response):
                print(f"\n{message.get('text', '')}")
                buttons += message.get("buttons") or []
            for number, button in enumerate(buttons, 1):
                print(f"  [{number}] {button['title']}")
            print(flush=True)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s - %(message)s")
    parser = argparse.ArgumentParser(prog="python -m bot", description="Asistente del SOM")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("content-check", help="valida data/content/")
    check.add_argument("--stale", type=int, metavar="DÍAS", help="lista lo revisado hace más de DÍAS días")
    check.add_argument("--today", type=dt.date.fromisoformat, help=argparse.SUPPRESS)  # for tests
    check.add_argument(
        "--confusions", type=int, nargs="?", const=15, metavar="N",
        help="deja fuera cada pregunta y lista las N confusiones más frecuentes (15 por defecto)",
    )  # fmt: skip
    check.set_defaults(func=cmd_content_check)
    commands.add_parser("gen-countries", help="regenera data/nlu/countries.yml").set_defaults(func=cmd_gen_countries)
    train = commands.add_parser("train", help="entrena si cambiaron datos, dominio o config")
    train.add_argument("--force", action="store_true")
    train.set_defaults(func=cmd_train)
    commands.add_parser("eval", help="mide la comprensión sobre tests/nlu").set_defaults(func=cmd_eval)
    commands.add_parser("run", help="inicia el servidor de acciones y el de Rasa").set_defaults(func=cmd_run)
    advisors = commands.add_parser("advisors", help="cuentas de asesores").add_subparsers(dest="action", required=True)
    add = advisors.add_parser("add", help="crea una cuenta de asesor")
    add.add_argument("username")
    add.add_argument("--name", help="nombre que verá la persona (por defecto, el usuario)")
    add.add_argument("--supervisor", action="store_true", help="con acceso al panel de indicadores")
    add.set_defaults(func=cmd_advisors_add)
    promote = advisors.add_parser("promote", help="da (o quita, con --revoke) el rol de supervisor")
    promote.add_argument("username")
    promote.add_argument("--revoke", action="store_true", help="quita el rol")
    promote.set_defaults(func=cmd_advisors_promote)
    revoke = advisors.add_parser("revoke", help="cierra todas las sesiones abiertas de un asesor")
    revoke.add_argument("username")
    revoke.set_defaults(func=cmd_advisors_revoke)
    commands.add_parser("cluster", help="dos réplicas y nginx (perfil de producción)").set_defaults(func=cmd_cluster)
    serve = commands.add_parser("serve", help="un solo servidor en primer plano (contenedores)")
    serve.add_argument("component", choices=("rasa", "actions"))
    serve.set_defaults(func=cmd_serve)
    purge = commands.add_parser("purge", help="borra lo que pasó el plazo de conservación (RETENTION_DAYS)")
    purge.add_argument("--older-than", type=float, metavar="DÍAS", help="otro plazo (por defecto, RETENTION_DAYS)")
    purge.add_argument("--now", type=_moment, help=argparse.SUPPRESS)  # for tests
    purge.set_defaults(func=cmd_purge)
    privacy = commands.add_parser("privacy", help="datos personales (Ley 29733)").add_subparsers(
        dest="action", required=True
    )
    forget = privacy.add_parser("forget", help="borra de todos los almacenes los datos de una conversación")
    forget.add_argument("conversation", help="identificador de la conversación, p. ej. whatsapp:+51987654321")
    forget.add_argument("--yes", action="store_true", help="no pide confirmación")
    forget.add_argument("--now", type=_moment, help=argparse.SUPPRESS)  # for tests
    forget.set_defaults(func=cmd_privacy_forget)
    commands.add_parser("shell", help="conversa con el asistente en esta terminal").set_defaults(func=cmd_shell)
    review = commands.add_parser("review", help="revisiones de respuestas por supervisores").add_subparsers(
        dest="action", required=True
    )
    review_export = review.add_parser("export", help="escribe las revisiones como ejemplos para los editores")
    review_export.add_argument("--out", default=str(PROJECT_ROOT / "reports" / "reviews"), metavar="CARPETA")
    review_export.set_defaults(func=cmd_review_export)
    figures = commands.add_parser("report", help="indicadores de un periodo (días en hora de Lima)")
    figures.add_argument("--since", type=_day, required=True, metavar="AAAA-MM-DD", help="primer día")
    figures.add_argument("--until", type=_day, metavar="AAAA-MM-DD", help="último día (por defecto, hoy)")
    figures.add_argument("--csv", metavar="ARCHIVO", help="escribe también los indicadores en CSV")
    figures.add_argument("--now", type=_moment, help=argparse.SUPPRESS)  # for tests
    figures.set_defaults(func=cmd_report)
    telegram = commands.add_parser("telegram", help="canal de Telegram").add_subparsers(dest="action", required=True)
    telegram.add_parser("set-webhook", help="registra el webhook en Telegram").set_defaults(
        func=cmd_telegram_set_webhook
    )
    poll = telegram.add_parser("poll", help="desarrollo local sin URL pública: consulta a Telegram")
    poll.add_argument("--url", help="webhook local (por defecto, el del puerto RASA_PORT)")
    poll.set_defaults(func=cmd_telegram_poll)
    args = parser.parse_args(argv)
    try:
        return args.func(Settings.from_env(), args)
    except runner.StartupError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
