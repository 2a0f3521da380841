/* Clientele storefront inside another site's iframe (?embed=1): tells the parent
   page its height, so embed.js there can size the iframe to fit. Only a height
   is sent; the parent decides whether to trust it (it checks our origin). */
(function () {
  "use strict";
  if (window.parent === window) return;
  var last = 0;
  function report() {
    var height = Math.ceil(document.documentElement.getBoundingClientRect().height);
    if (height === last) return;
    last = height;
    window.parent.postMessage({ type: "clientele:height", height: height, href: location.href }, "*");
  }
  if (window.ResizeObserver) {
    new ResizeObserver(report).observe(document.documentElement);
  } else {
    window.addEventListener("resize", report);
    window.setInterval(report, 500);
  }
  window.addEventListener("load", report);
  report();
})();
