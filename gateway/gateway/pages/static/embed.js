/* Clientele embed script, for coaches' own websites:

     <iframe src="https://…/b/your-business?embed=1" data-clientele-embed
             title="Offerings" style="width:100%;border:0" loading="lazy"></iframe>
     <script src="https://…/embed.js" async></script>

   sizes each Clientele iframe to its content (the framed page posts its height), and

     <a href="https://…/b/your-business/offerings/…" data-clientele-button>Book now</a>

   opens that page in an overlay on the coach's site (data-clientele-button="tab":
   in a new tab). Without this script the link still opens the page. Messages are
   accepted only from the Clientele origin this script was loaded from. */
(function () {
  "use strict";
  var script = document.currentScript;
  var origin;
  try {
    origin = new URL(script && script.src ? script.src : location.href).origin;
  } catch (e) {
    return;
  }
  if (window.__clienteleEmbed === origin) return; // loaded twice on one page
  window.__clienteleEmbed = origin;

  function ours(url) {
    try {
      return new URL(url, location.href).origin === origin;
    } catch (e) {
      return false;
    }
  }

  function withEmbed(url) {
    var u = new URL(url, location.href);
    u.searchParams.set("embed", "1");
    return u.toString();
  }

  // -- iframes follow their content's height --------------------------------------

  window.addEventListener("message", function (event) {
    if (event.origin !== origin) return;
    var data = event.data;
    if (!data || data.type !== "clientele:height") return;
    var height = Number(data.height);
    if (!isFinite(height) || height <= 0) return;
    var frames = document.getElementsByTagName("iframe");
    for (var i = 0; i < frames.length; i++) {
      if (frames[i].contentWindow === event.source) {
        frames[i].style.height = Math.min(Math.ceil(height), 20000) + "px";
        frames[i].setAttribute("scrolling", "no");
      }
    }
  });

  // -- buttons: the offering in an overlay (or a new tab) --------------------------

  var overlay = null;
  var opener = null;

  function close() {
    if (!overlay) return;
    overlay.remove();
    overlay = null;
    document.documentElement.style.overflow = "";
    if (opener) opener.focus();
  }

  function open(link) {
    close();
    opener = link;
    overlay = document.createElement("div");
    overlay.setAttribute("role", "dialog");
    overlay.setAttribute("aria-modal", "true");
    overlay.setAttribute("aria-label", link.textContent.trim() || "Offering");
    overlay.style.cssText =
      "position:fixed;inset:0;z-index:2147483647;display:flex;align-items:center;" +
      "justify-content:center;padding:16px;background:rgba(16,24,40,.6);box-sizing:border-box";
    var panel = document.createElement("div");
    panel.style.cssText =
      "position:relative;width:100%;max-width:720px;height:min(90vh,900px);background:#fff;" +
      "border-radius:14px;overflow:hidden;box-shadow:0 18px 40px -12px rgba(0,0,0,.4)";
    var frame = document.createElement("iframe");
    frame.src = withEmbed(link.href);
    frame.title = link.textContent.trim() || "Offering";
    frame.style.cssText = "width:100%;height:100%;border:0;display:block";
    var button = document.createElement("button");
    button.type = "button";
    button.textContent = "\u00d7";
    button.setAttribute("aria-label", "Close");
    button.style.cssText =
      "position:absolute;top:8px;right:8px;width:36px;height:36px;border:0;border-radius:999px;" +
      "background:#fff;color:#17201e;font:24px/36px system-ui,sans-serif;cursor:pointer;" +
      "box-shadow:0 1px 3px rgba(0,0,0,.25)";
    button.addEventListener("click", close);
    overlay.addEventListener("click", function (event) {
      if (event.target === overlay) close();
    });
    panel.appendChild(frame);
    panel.appendChild(button);
    overlay.appendChild(panel);
    document.body.appendChild(overlay);
    document.documentElement.style.overflow = "hidden";
    button.focus();
  }

  document.addEventListener("keydown", function (event) {
    if (overlay && event.key === "Escape") close();
  });

  document.addEventListener("click", function (event) {
    if (event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    var link = event.target.closest ? event.target.closest("a[data-clientele-button]") : null;
    if (!link || !ours(link.href)) return;
    event.preventDefault();
    if (link.getAttribute("data-clientele-button") === "tab") {
      window.open(link.href, "_blank", "noopener");
    } else {
      open(link);
    }
  });
})();
