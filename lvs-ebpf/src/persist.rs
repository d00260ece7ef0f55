//! Persistent services (`-p`, reference §4.1): a client network keeps its
//! real server through a template, without asking the scheduler again.

use lvs_common::{FlowKey, Service, Template, TemplateKey, Verdict};

use crate::{maps::TEMPLATES, publication};

/// The template's real server while it lives, else a fresh choice that
/// becomes the template. Either way the template is re-armed.
#[inline(always)]
pub fn choose(service: &Service, flow: &FlowKey, now: u64) -> Result<u32, Verdict> {
    let mask = service.persist_mask();
    let src = flow.src();
    let net = [
        src[0] & mask[0],
        src[1] & mask[1],
        src[2] & mask[2],
        src[3] & mask[3],
    ];
    let key = TemplateKey::new(service.index, net);
    let expires = now + service.persist_timeout_s as u64 * 1_000_000_000;
    if let Some(template) = TEMPLATES.get_ptr_mut(key) {
        // SAFETY: the pointer comes from a successful map lookup.
        let template = unsafe { &mut *template };
        if now < template.expires_ns {
            template.expires_ns = expires;
            return Ok(template.real_index);
        }
    }
    let real_index = publication::choose(service, flow, now)?;
    TEMPLATES
        .insert(key, Template::new(real_index, expires), 0)
        .map_err(|_| Verdict::DropTableFull)?;
    Ok(real_index)
}
